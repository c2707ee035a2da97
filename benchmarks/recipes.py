"""The pipeline's recipe vs three peer Keras scripts on the same images: test accuracy and
training wall time, side by side, alternated round by round (A B C D A B C D ...) in one process.

The images are made here: scikit-learn's 8x8 digits drawn into MNIST's layout (a 20x20 box in
a 28x28 grey image) with a random affine warp (rotation, scale, shear, shift), stroke width,
blur and noise, written as PNG class folders and listed in a `csv:` manifest. The test split
(20% of the images) is drawn from a fifth of the 1,797 source digits that no training or
validation image comes from, as MNIST's test digits come from writers its training set does not
hold: a test image is never a warped copy of a training digit, so what is measured is how a
recipe generalises, not how well it remembers. The pipeline's own ingest takes that test split
and splits validation (10%) from the rest. The ratios (time) and differences (accuracy) are the
figures this benchmark is for; absolute accuracies on these low-resolution digits are not
MNIST's.

    python benchmarks/recipes.py [--experiment mnist] [--candidate NAME] [--images 10000]
                                 [--rounds 5] [--peer lenet --peer bn-convnet]
                                 [--set models.0.epochs=12 ...]

The recipe side is every candidate without a search of the bundled experiment (or those named
with --candidate), each trained by `components.train.keras.trainer.train_keras` from the Dataset
the pipeline's ingest wrote, its time including the building of its input, the writing of the
Model artifact and its test predictions. The peers (`PEERS` below: a LeNet-5, the Keras-examples
convnet, an augmented batch-norm convnet) read the same splits as arrays; their time is their
`fit`. Each round uses one seed for every side; every time is a ratio to the Keras-examples
convnet's in the same round.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from sides import ROUNDS, Sides, add_set_argument, alternate

SIDE = 28  # MNIST's image side
BOX = 20  # MNIST centres each digit's 20x20 box in the 28x28 image


def make_digit_folder(
    root: Path, images: int, seed: int = 0, sources: np.ndarray | None = None
) -> Path:
    """`images` distorted 28x28 digits as `<root>/<digit>/<n>.png`, each drawn from one of
    `sources` (indices into scikit-learn's 1,797 digits; all of them by default)."""
    from PIL import Image, ImageFilter
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    digits = load_digits()
    pool = np.arange(len(digits.images)) if sources is None else np.asarray(sources)
    for label in range(10):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
    for index in range(images):
        source = int(pool[rng.integers(len(pool))])
        pixels = (digits.images[source] / 16.0 * 255).astype(np.uint8)
        digit = Image.fromarray(pixels).resize((BOX, BOX), Image.Resampling.BICUBIC)
        canvas = Image.new("L", (SIDE, SIDE))
        canvas.paste(digit, ((SIDE - BOX) // 2, (SIDE - BOX) // 2))
        canvas = _warp(canvas, rng)
        if rng.random() < 0.5:  # thicker or thinner strokes
            canvas = canvas.filter(
                ImageFilter.MaxFilter(3) if rng.random() < 0.5 else ImageFilter.MinFilter(3)
            )
        canvas = canvas.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.0))))
        array = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 12, (SIDE, SIDE))
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
        image.save(root / str(digits.target[source]) / f"{index:05d}.png")
    return root


def make_digit_source(root: Path, images: int, seed: int = 0, test: float = 0.2) -> Path:
    """`images` made digits as a `csv:` manifest (path, label, split) at `<root>/digits.csv`:
    a `test` fraction from source digits of their own, marked split `test`, the rest unmarked
    for the pipeline to split."""
    import csv

    order = np.random.default_rng(seed).permutation(1797)  # scikit-learn's digits
    held_out = round(len(order) * test)
    n_test = round(images * test)
    make_digit_folder(root / "train", images - n_test, seed, order[held_out:])
    make_digit_folder(root / "test", n_test, seed + 1, order[:held_out])
    manifest = root / "digits.csv"
    with manifest.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "label", "split"])
        for part in ("train", "test"):
            for png in sorted((root / part).glob("*/*.png")):
                split = "test" if part == "test" else ""
                writer.writerow([png.relative_to(root).as_posix(), png.parent.name, split])
    return manifest


def _warp(image: Any, rng: np.random.Generator) -> Any:
    """A random affine map about the centre: rotation +-15 degrees, scale 0.85-1.15, shear, shift +-2."""
    from PIL import Image

    angle = np.deg2rad(rng.uniform(-15, 15))
    scale = rng.uniform(0.85, 1.15)
    shear = rng.uniform(-0.2, 0.2)
    a, b = np.cos(angle) / scale, np.sin(angle) / scale + shear
    c, d = -np.sin(angle) / scale, np.cos(angle) / scale
    centre = SIDE / 2
    dx, dy = rng.uniform(-2, 2, 2)
    offset_x = centre - a * centre - b * centre + dx
    offset_y = centre - c * centre - d * centre + dy
    return image.transform(
        image.size,
        Image.Transform.AFFINE,
        (a, b, offset_x, c, d, offset_y),
        Image.Resampling.BILINEAR,
    )


def split_arrays(dataset_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split of the pipeline's Dataset as arrays (float32 [0, 255] pixels, int labels)."""
    from components.common.tfdata import make_dataset

    batches = list(make_dataset(dataset_dir, split, (SIDE, SIDE), 1, 1024, cache=False))
    return (
        np.concatenate([x.numpy() for x, _ in batches]),
        np.concatenate([y.numpy() for _, y in batches]),
    )


def _fit_script(
    model: Any,
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
    epochs: int,
    callbacks: list[Any],
    batch_size: int = 128,
) -> tuple[float, float, int]:
    """Fit a peer script's compiled model on the train split (validating on the validation
    split), then score it on the test split: (test accuracy, seconds of `fit`, epochs run)."""
    (x_train, y_train), validation, (x_test, y_test) = (
        arrays["train"],
        arrays["validation"],
        arrays["test"],
    )
    started = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=validation,
        callbacks=callbacks,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return float(accuracy), seconds, len(history.history["loss"])


def lenet_script(
    arrays: dict[str, tuple[np.ndarray, np.ndarray]], seed: int
) -> tuple[float, float]:
    """A 30-line script: a ReLU LeNet-5 with Adam and early stopping (patience 5 on validation
    accuracy, best weights restored), with the bundled mnist recipe's augmentation as layers.
    Returns (test accuracy, seconds of training)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((SIDE, SIDE, 1)),
            layers.Rescaling(1 / 255),
            layers.RandomRotation(0.03),
            layers.RandomZoom(0.1),
            layers.RandomTranslation(0.1, 0.1),
            layers.Conv2D(6, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(16, 5, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(120, activation="relu"),
            layers.Dense(84, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping("val_accuracy", patience=5, restore_best_weights=True)
    accuracy, seconds, epochs = _fit_script(model, arrays, 100, [stop])
    print(f"  lenet: {epochs} epochs", flush=True)
    return accuracy, seconds


def keras_convnet_script(
    arrays: dict[str, tuple[np.ndarray, np.ndarray]], seed: int
) -> tuple[float, float]:
    """F. Chollet's "Simple MNIST convnet" (keras.io code example) as written there: two
    'valid' 3x3 convolutions (32, 64 filters) with 2x2 max pooling, dropout 0.5 before the
    classifier, Adam, batch 128, 15 epochs, no augmentation. The time every other side is
    measured against."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((SIDE, SIDE, 1)),
            layers.Rescaling(1 / 255),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return _fit_script(model, arrays, 15, [])[:2]


def bn_convnet_script(
    arrays: dict[str, tuple[np.ndarray, np.ndarray]], seed: int
) -> tuple[float, float]:
    """A longer script after C. Deotte's Kaggle MNIST nets ("How to choose CNN Architecture
    MNIST", 2018): four 'same' 3x3 convolution blocks (32, 32, 64, 64 filters) with batch norm
    and ReLU, 2x2 max pooling and dropout 0.4 after each pair, dense 128 with batch norm and
    dropout 0.4; rotation 10 degrees, zoom and shift 10% as layers; Adam 1e-3 with a cosine
    decay to 0, batch 128, 20 epochs."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    stack: list[Any] = [
        keras.Input((SIDE, SIDE, 1)),
        layers.Rescaling(1 / 255),
        layers.RandomRotation(0.03, fill_mode="constant"),
        layers.RandomZoom(0.1, fill_mode="constant"),
        layers.RandomTranslation(0.1, 0.1, fill_mode="constant"),
    ]
    for width in (32, 64):
        for _ in range(2):
            stack += [
                layers.Conv2D(width, 3, padding="same", use_bias=False),
                layers.BatchNormalization(),
                layers.Activation("relu"),
            ]
        stack += [layers.MaxPooling2D(), layers.Dropout(0.4)]
    stack += [
        layers.Flatten(),
        layers.Dense(128, use_bias=False),
        layers.BatchNormalization(),
        layers.Activation("relu"),
        layers.Dropout(0.4),
        layers.Dense(10, activation="softmax"),
    ]
    model = keras.Sequential(stack)
    epochs, steps = 20, math.ceil(len(arrays["train"][1]) / 128)
    rate = keras.optimizers.schedules.CosineDecay(1e-3, epochs * steps)
    model.compile(
        keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return _fit_script(model, arrays, epochs, [])[:2]


# The peer scripts, each a few dozen lines of Keras, in the order they run in a round.
PEERS = {"lenet": lenet_script, "convnet": keras_convnet_script, "bn-convnet": bn_convnet_script}
BASELINE = "convnet"  # the Keras-examples script: every time is a ratio to its


def pipeline_recipe(
    dataset_dir: Path, spec: Any, seed: int, workdir: Path, test: tuple[np.ndarray, np.ndarray]
) -> tuple[float, float]:
    """The candidate trained by the pipeline's trainer; (test accuracy, seconds of training)."""
    import keras

    from components.models.keras import KERAS_DIR, MODEL_FILE
    from components.train.keras.trainer import train_keras

    model_dir = workdir / f"model-{spec.name}-{seed}-{time.monotonic_ns()}"
    started = time.perf_counter()
    train_keras(dataset_dir, spec, seed, model_dir)
    seconds = time.perf_counter() - started
    model = keras.saving.load_model(model_dir / KERAS_DIR / MODEL_FILE, compile=False)
    predicted = np.argmax(model.predict(test[0], batch_size=512, verbose=0), axis=1)
    return float(np.mean(predicted == test[1])), seconds


def compare(
    workdir: Path, specs: list[Any], data: Any, images: int, rounds: int, peers: list[str]
) -> tuple[Sides, dict[str, list[float]], dict[str, list[float]]]:
    """Ingest the made folder as the pipeline does, then alternate the peer scripts and the
    recipe (every candidate in turn, as the pipeline trains them), one seed a round for all.
    Returns the seconds of each side per round, and each peer's and candidate's test accuracy
    and seconds per round."""
    from components.ingest.run import ingest

    manifest = make_digit_source(workdir / "digits", images)
    data = data.model_copy(update={"source": f"csv:{manifest}"})
    ingest(data, workdir / "dataset", workdir / "quarantine.csv")
    arrays = {s: split_arrays(workdir / "dataset", s) for s in ("train", "validation", "test")}
    print("images per split: " + ", ".join(f"{s} {len(a[1])}" for s, a in arrays.items()))
    accuracy: dict[str, list[float]] = {
        **{peer: [] for peer in peers},
        **{spec.name: [] for spec in specs},
    }
    seconds: dict[str, list[float]] = {name: [] for name in accuracy}

    def record(name: str, round_: int, value: float, elapsed: float) -> float:
        accuracy[name].append(value)
        seconds[name].append(elapsed)
        print(f"  round {round_}: {name:<14} accuracy {value:.4f} {elapsed:7.1f} s", flush=True)
        return elapsed

    def peer(name: str) -> Callable[[int], float]:
        return lambda round_: record(name, round_, *PEERS[name](arrays, round_))

    def recipe(round_: int) -> float:
        return sum(
            record(
                spec.name,
                round_,
                *pipeline_recipe(workdir / "dataset", spec, round_, workdir, arrays["test"]),
            )
            for spec in specs
        )

    # every round is a whole training, tracing included, on every side: no warm-up
    sides = alternate({**{name: peer(name) for name in peers}, "recipe": recipe}, rounds, warmup=0)
    return sides, accuracy, seconds


def _mean_std(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.2f}% +- {100 * statistics.stdev(values):.2f}"


def report(
    accuracy: dict[str, list[float]], seconds: dict[str, list[float]], baseline: str
) -> list[str]:
    """One line per side: test accuracy (mean +- std over rounds), its time as a ratio to the
    baseline's in the same round (median, min, max), and its accuracy gain over the baseline's
    in the same round."""
    lines = []
    for name, values in accuracy.items():
        share = [a / b for a, b in zip(seconds[name], seconds[baseline], strict=True)]
        gain = [a - b for a, b in zip(values, accuracy[baseline], strict=True)]
        line = (
            f"  {name:<14} {_mean_std(values)}   time {statistics.median(share):.2f}x "
            f"(min {min(share):.2f}, max {max(share):.2f})"
        )
        if name != baseline:
            line += (
                f"   gain {100 * statistics.mean(gain):+.2f} points "
                f"(min {100 * min(gain):+.2f}, max {100 * max(gain):+.2f})"
            )
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    from pipelines.config import load_experiment

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiment", default="mnist")
    parser.add_argument(
        "--candidate", action="append", help="a model to train (default: all without a search)"
    )
    parser.add_argument(
        "--peer",
        action="append",
        choices=sorted(PEERS),
        help=f"a peer script to run (default: all; {BASELINE} always runs)",
    )
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"alternations (>= {ROUNDS})")
    add_set_argument(parser)
    args = parser.parse_args(argv)
    # The test split is the manifest's; the pipeline splits validation (10%) from the rest.
    experiment = load_experiment(args.experiment, ["data.splits.validation=0.1", *args.overrides])
    models = {m.name: m for m in experiment.models}
    unknown = sorted(set(args.candidate or ()) - set(models))
    if unknown:
        raise SystemExit(
            f"--candidate {', '.join(unknown)}: {args.experiment} has {', '.join(models)}"
        )
    specs = (
        [models[n] for n in args.candidate]
        if args.candidate
        else [m for m in experiment.models if m.search is None]
    )
    if not specs:
        raise SystemExit(f"{args.experiment}: every candidate searches; name one with --candidate")
    peers = [name for name in PEERS if not args.peer or name in args.peer or name == BASELINE]
    names = ", ".join(f"{s.name} ({s.architecture}, {s.epochs} epochs)" for s in specs)
    print(
        f"{args.experiment} recipe [{names}] vs the peer scripts [{', '.join(peers)}], "
        f"{args.images} made digits, {args.rounds} alternated rounds"
    )
    with tempfile.TemporaryDirectory() as folder:
        sides, accuracy, seconds = compare(
            Path(folder), specs, experiment.data, args.images, args.rounds, peers
        )
    print(
        "test accuracy (mean +- std over rounds, one seed a round), training time as a ratio to "
        f"the {BASELINE} script's in the same round, and accuracy gain over it:"
    )
    print("\n".join(report(accuracy, seconds, BASELINE)))
    print(
        f"  recipe (all candidates) / {BASELINE} time: {sides.ratio('recipe', BASELINE)}  "
        "(goal <= 2)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
