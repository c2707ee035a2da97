"""The image a component is declared with; each target sets the real one per task."""

BASE_IMAGE = "image-classification-cpu:latest"
