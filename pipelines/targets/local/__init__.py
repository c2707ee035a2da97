"""The `local` target: the whole pipeline through kfp.local on this machine.

One module per concern: `target` (the task hooks and the run), `console` (a line per task,
progress bars), `capture` (each step's output to its task's log, the task records),
`kfp_local_patches` (what kfp.local 2.17 is patched for and how), `results` (the run folder:
index.html, reports, logs, links), `outcome` (how the run ended), `stopping` (SIGINT, SIGTERM and
SIGHUP end every step). May import `pipelines.config`, `pipelines.errors`,
`pipelines.targets.base`, `components/` and kfp.
"""

from pipelines.targets.local.target import LocalTarget

__all__ = ["LocalTarget"]
