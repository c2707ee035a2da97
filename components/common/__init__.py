"""Ground floor: the artifact formats (Dataset, Model card), typed step results (`results.py`),
files, HTML, images, progress. May import `components.spec` and nothing else of ours; no kfp."""
