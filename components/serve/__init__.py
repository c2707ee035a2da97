"""Serve a registered model over HTTP with the KServe v1 protocol, on every target.

`python -m components.serve --model runs/registry/<name>` serves the champion (or a version
folder) on localhost; the same command runs in the cpu image as the KServe custom predictor on
kind (`manifests.inference_service`) and as the Vertex AI custom serving container
(`manifests.vertex_container_spec`). `python -m components.serve.check` sends a Dataset's test
images to a running server and compares its answers with the evaluate step's predictions.
"""
