"""The keras architectures and their knobs: each architecture's `params`, with types and ranges.

Ground floor (imports nothing of ours but the base): the experiment's validation and the model
registry (`components/models/keras.py`, whose builders take these typed objects) share one
definition of every knob, its default and its range, and of the smallest input each
architecture accepts. A `params: {dropout: 5}` is refused when the experiment loads, not when
the graph is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from components.spec.base import Strict

Rate = Annotated[float, Field(ge=0.0, lt=1.0)]  # a dropout rate
Width = Annotated[int, Field(ge=1, le=4096)]  # filters of a convolution, units of a dense layer
InputSide = Annotated[int, Field(ge=8, le=1024)]


class ArchitectureParams(Strict):
    """Knobs every keras architecture takes."""

    input_size: InputSide | None = Field(
        default=None,
        description="side of the square input the model is built for; the input pipeline "
        "resizes to it (default: data.image_size)",
    )

    def min_input_side(self) -> int:
        """The smallest input side the architecture's downsampling leaves at least 1 pixel of."""
        return 1


class SmallCnnParams(ArchitectureParams):
    filters: Width = 32
    dropout: Rate = 0.25

    def min_input_side(self) -> int:
        return 2  # one 2x2 pooling


class LeNet5Params(ArchitectureParams):
    activation: Literal["tanh", "relu"] = "tanh"
    pooling: Literal["average", "max"] = "average"
    batch_norm: bool = False
    dropout: Rate = 0.0

    def min_input_side(self) -> int:
        return 12  # 'same' 5x5, pool 2, 'valid' 5x5 (-4), pool 2: 12 -> 6 -> 2 -> 1


class Cnn3Params(ArchitectureParams):
    filters: list[Width] = Field(default=[32, 64, 128], min_length=1, max_length=6)
    dropout: Rate = 0.0
    batch_norm: bool = False
    l2: float = Field(default=0.0, ge=0.0, le=1.0)
    dense: Width = 128

    def min_input_side(self) -> int:
        return 2 ** len(self.filters)  # a 2x2 pooling per block


class CifarCnnParams(ArchitectureParams):
    dropout: Rate = 0.3

    def min_input_side(self) -> int:
        return 8  # three blocks


class MnistCnnParams(ArchitectureParams):
    filters: list[Width] = Field(default=[32, 64], min_length=1, max_length=4)
    convs_per_block: int = Field(default=1, ge=1, le=4)
    padding: Literal["valid", "same"] = Field(
        default="valid",
        description="'valid' 3x3 convolutions shrink each side by 2 (28 -> 26 -> 13 -> 11 -> 5, "
        "as in Keras' Simple MNIST convnet); 'same' keeps it (about twice the compute)",
    )
    batch_norm: bool = False
    block_dropout: Rate = 0.25
    dense: Width = 128
    dropout: Rate = 0.4

    def min_input_side(self) -> int:
        side = 1  # walk the blocks backwards: a 2x2 pooling, then each convolution's border
        for _ in self.filters:
            side = 2 * side + (2 * self.convs_per_block if self.padding == "valid" else 0)
        return side


class ApplicationParams(ArchitectureParams):
    """The new head on a keras.applications backbone."""

    dropout: Rate = 0.2


# Architectures trained from scratch (builders in components/models/keras), with their knobs.
SCRATCH_PARAMS: dict[str, type[ArchitectureParams]] = {
    "small_cnn": SmallCnnParams,
    "lenet5": LeNet5Params,
    "cifar_cnn": CifarCnnParams,
    "cnn3": Cnn3Params,
    "mnist_cnn": MnistCnnParams,
}
KERAS_SCRATCH_ARCHITECTURES = tuple(SCRATCH_PARAMS)


@dataclass(frozen=True)
class Application:
    """A keras.applications backbone: its class, the preprocessing it expects ("tf": scale to
    [-1, 1]; "torch": /255 then ImageNet mean/std; "none": the backbone includes its own) and
    the smallest input side keras accepts for it (its `obtain_input_shape` min_size)."""

    class_name: str
    preprocessing: Literal["tf", "torch", "none"]
    min_side: int = 32


KERAS_APPLICATIONS: dict[str, Application] = {
    "resnet50v2": Application("ResNet50V2", "tf"),
    "inceptionv3": Application("InceptionV3", "tf", min_side=75),
    "efficientnetv2b0": Application("EfficientNetV2B0", "none"),
    "efficientnetv2b1": Application("EfficientNetV2B1", "none"),
    "efficientnetv2b2": Application("EfficientNetV2B2", "none"),
    "efficientnetv2b3": Application("EfficientNetV2B3", "none"),
    "efficientnetv2s": Application("EfficientNetV2S", "none"),
    "efficientnetv2m": Application("EfficientNetV2M", "none"),
    "efficientnetv2l": Application("EfficientNetV2L", "none"),
    "convnexttiny": Application("ConvNeXtTiny", "none"),
    "convnextsmall": Application("ConvNeXtSmall", "none"),
    "convnextbase": Application("ConvNeXtBase", "none"),
    "convnextlarge": Application("ConvNeXtLarge", "none"),
    "convnextxlarge": Application("ConvNeXtXLarge", "none"),
    "densenet121": Application("DenseNet121", "torch"),
    "densenet169": Application("DenseNet169", "torch"),
    "mobilenetv3small": Application("MobileNetV3Small", "none"),
    "mobilenetv3large": Application("MobileNetV3Large", "none"),
}
KERAS_ARCHITECTURES = KERAS_SCRATCH_ARCHITECTURES + tuple(KERAS_APPLICATIONS)
# What keras' load_weights reads (saving_api.load_weights); models[].weights names one of these.
WEIGHT_FILE_SUFFIXES = (".weights.h5", ".weights.json", ".keras", ".h5", ".hdf5")


def params_class(architecture: str) -> type[ArchitectureParams]:
    """The knobs of a keras architecture (KeyError for an unknown one)."""
    if architecture in KERAS_APPLICATIONS:
        return ApplicationParams
    return SCRATCH_PARAMS[architecture]


def parse_params(
    architecture: str, params: dict[str, Any], prefix: str = "params."
) -> ArchitectureParams:
    """`params` as the architecture's typed knobs; a ValueError naming `<prefix>KEY`, the bad
    value and what is allowed otherwise."""
    knobs = params_class(architecture)
    try:
        return knobs.model_validate(params)
    except ValidationError as exc:
        takes = ", ".join(knobs.model_fields)
        problems = []
        for error in exc.errors():
            where = prefix + ".".join(str(p) for p in error["loc"])
            if error["type"] == "extra_forbidden":
                problems.append(
                    f"{where}: {architecture} has no parameter '{error['loc'][0]}'; "
                    f"it takes {takes}"
                )
            else:
                message = str(error["msg"]).removeprefix("Value error, ")
                problems.append(f"{where}: {message} (got {error['input']!r})")
        raise ValueError("; ".join(problems)) from None


def min_input_side(architecture: str, params: ArchitectureParams) -> int:
    """The smallest square input `architecture` with these knobs can be built for."""
    if architecture in KERAS_APPLICATIONS:
        return KERAS_APPLICATIONS[architecture].min_side
    return params.min_input_side()
