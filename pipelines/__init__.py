"""The top floor: orchestration only. Owns the experiment schema (`config`), the whole DAG
(`training`, `registration`), the CLI and its summary, and the targets (`targets/`).

May import anything under `components/` and kfp; nothing under `components/` imports it.
Within: `targets` -> `training` -> `registration` -> `config`, `errors` (arrows point down).
"""
