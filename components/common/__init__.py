"""Ground floor: the artifact formats (Dataset, Model card), typed step results (`results.py`,
`search_summary.py`), files, HTML and its figures (`plots.py`), images, progress. May import
`components.spec` and nothing else of ours; no kfp."""
