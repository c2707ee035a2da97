"""The pipeline's recipe vs a 30-line Keras script on the same images: test accuracy and
training wall time, side by side, alternated round by round (A B A B ...) in one process.

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
                                 [--rounds 5] [--set models.0.epochs=12 ...]

The recipe side is every candidate without a search of the bundled experiment (or those named
with --candidate), each trained by `components.train.keras.trainer.train_keras` from the Dataset
the pipeline's ingest wrote, its time including the writing of the Model artifact; the script
side is `thirty_line_script` below, reading the same splits as arrays. Each round uses one seed
for both sides.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from sides import ROUNDS, Sides, alternate

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


def thirty_line_script(
    arrays: dict[str, tuple[np.ndarray, np.ndarray]], seed: int
) -> tuple[float, float]:
    """The baseline the issue measured: a ReLU LeNet-5 with Adam and early stopping, written
    the way a short Keras script writes it (the augmentation of the bundled mnist recipe as
    layers; patience 5 on validation accuracy, best weights restored). Returns (test accuracy,
    seconds of training)."""
    import keras
    from keras import layers

    (x_train, y_train), validation, (x_test, y_test) = (
        arrays["train"],
        arrays["validation"],
        arrays["test"],
    )
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
    started = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        batch_size=128,
        epochs=100,
        validation_data=validation,
        callbacks=[stop],
        verbose=0,
    )
    seconds = time.perf_counter() - started
    print(f"  script: {stop.stopped_epoch + 1 if stop.stopped_epoch else 100} epochs", flush=True)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return float(accuracy), seconds


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
    workdir: Path, specs: list[Any], data: Any, images: int, rounds: int
) -> tuple[Sides, dict[str, list[float]], dict[str, list[float]]]:
    """Ingest the made folder as the pipeline does, then alternate the script and the recipe
    (every candidate in turn, as the pipeline trains them). Returns the seconds of each side
    per round, and each candidate's (and the script's) test accuracy and seconds per round."""
    from components.ingest.run import ingest

    manifest = make_digit_source(workdir / "digits", images)
    data = data.model_copy(update={"source": f"csv:{manifest}"})
    ingest(data, workdir / "dataset", workdir / "quarantine.csv")
    arrays = {s: split_arrays(workdir / "dataset", s) for s in ("train", "validation", "test")}
    print("images per split: " + ", ".join(f"{s} {len(a[1])}" for s, a in arrays.items()))
    accuracy: dict[str, list[float]] = {"script": [], **{spec.name: [] for spec in specs}}
    seconds: dict[str, list[float]] = {name: [] for name in accuracy}

    def record(name: str, round_: int, value: float, elapsed: float) -> float:
        accuracy[name].append(value)
        seconds[name].append(elapsed)
        print(f"  round {round_}: {name:<12} accuracy {value:.4f} {elapsed:7.1f} s", flush=True)
        return elapsed

    def script(round_: int) -> float:
        return record("script", round_, *thirty_line_script(arrays, round_))

    def recipe(round_: int) -> float:
        return sum(
            record(
                spec.name,
                round_,
                *pipeline_recipe(workdir / "dataset", spec, round_, workdir, arrays["test"]),
            )
            for spec in specs
        )

    # every round is a whole training, tracing included, on both sides: no warm-up
    sides = alternate({"script": script, "recipe": recipe}, rounds, warmup=0)
    return sides, accuracy, seconds


def _mean_std(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.2f}% +- {100 * statistics.stdev(values):.2f}"


def main(argv: list[str] | None = None) -> int:
    from pipelines.config import load_experiment

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiment", default="mnist")
    parser.add_argument(
        "--candidate", action="append", help="a model to train (default: all without a search)"
    )
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"alternations (>= {ROUNDS})")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="override a field of the experiment, as submit.py --set does",
    )
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
    names = ", ".join(f"{s.name} ({s.architecture}, {s.epochs} epochs)" for s in specs)
    print(
        f"{args.experiment} recipe [{names}] vs the 30-line LeNet-5 script, "
        f"{args.images} made digits, {args.rounds} alternated rounds"
    )
    with tempfile.TemporaryDirectory() as folder:
        sides, accuracy, seconds = compare(
            Path(folder), specs, experiment.data, args.images, args.rounds
        )
    print("test accuracy (mean +- std over rounds, one seed a round) and training time:")
    script_seconds = seconds["script"]
    for name, values in accuracy.items():
        share = [a / b for a, b in zip(seconds[name], script_seconds, strict=True)]
        gain = [a - b for a, b in zip(values, accuracy["script"], strict=True)]
        line = f"  {name:<12} {_mean_std(values)}   time {statistics.median(share):.2f}x script"
        if name != "script":
            line += (
                f"   gain {100 * statistics.mean(gain):+.2f} points "
                f"(min {100 * min(gain):+.2f}, max {100 * max(gain):+.2f})"
            )
        print(line)
    print(
        f"  recipe (all candidates) / script time: {sides.ratio('recipe', 'script')}  (goal <= 3)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
