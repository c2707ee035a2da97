"""The register steps: the folder registry (`run.py`: versioned folders, idempotent, atomic) and
the plan of a Vertex AI Model Registry upload (`vertex.py`). The subgraphs that use them are wired
in `pipelines/registration.py`. May import `components.common` and `components.spec`."""
