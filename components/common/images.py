"""The image a component is declared with; each target sets the real one per task."""

from pipelines.config import Images

BASE_IMAGE = Images().cpu
