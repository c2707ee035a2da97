"""The export step: convert the gated best model to deployable formats (`convert.py`, with
`keras_convert.py`, `transformers_convert.py`, `onnx_quantize.py`), run each with its own
runtime (`runtimes.py`), measure it against the original (`measure.py`) and report
(`report.py`); `run.py` ties them together. May import `components.common`, `components.spec`
and `components.models`."""
