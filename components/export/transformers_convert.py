"""Transformers Model -> ONNX with `torch.onnx.export`, preprocessing inside the graph.

The exported graph takes what the native model takes (raw float32 NHWC pixels of the card's
input size) and does the checkpoint's centre crop, rescale and mean/std itself, then softmax,
so ONNX callers need no image processor.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from components.common.export_artifact import INPUT_NAME, ONNX_OPSET, OUTPUT_NAME


def to_onnx(classifier: Any, destination: Path) -> Path:
    """`classifier`: the loaded TransformersClassifier (its torch model and preprocessing)."""
    import torch

    from components.models.transformers import model_inputs

    preprocessing = classifier.preprocessing

    class RawPixels(torch.nn.Module):
        def __init__(self, model: Any):
            super().__init__()
            self.model = model

        def forward(self, image: Any) -> Any:
            pixels = model_inputs(image.permute(0, 3, 1, 2), preprocessing)
            return torch.softmax(self.model(pixel_values=pixels).logits.float(), dim=-1)

    module = RawPixels(classifier.model.to("cpu").eval())
    height, width = preprocessing.input_size
    example = torch.zeros(2, height, width, 3)
    with warnings.catch_warnings(), torch.inference_mode():
        # The tracer warns about shape checks inside transformers; the input size is fixed.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(destination),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return destination
