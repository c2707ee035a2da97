"""The whole `mnist` experiment vs the Keras-examples convnet as a script, on the same images:
wall time from process start to exit, and test accuracy, alternated round by round in one run
(goal: the experiment at most 2x the script's time, with a better test accuracy).

The images are benchmarks/recipes.py's made digits in MNIST's layout, written as class folders
(`train/<digit>/`, and `test/<digit>/` from held-out source digits). The experiment reads them
as a `csv:` manifest with that test split and splits validation (10%) from the rest, running
every step through kfp.local as `python pipelines/submit.py` does (the gate is lowered to the
made digits' level, so the register step runs as it would on MNIST). The script is what a
user writes from F. Chollet's "Simple MNIST convnet" (keras.io): it reads the same folders with
`keras.utils.image_dataset_from_directory` (validation 10% of train), fits 15 epochs, scores
the test folder.

    python benchmarks/experiment_vs_script.py [--images 10000] [--rounds 5]
                                              [--set models.0.epochs=12 ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from recipes import make_digit_source
from sides import ROUNDS, add_set_argument, alternate

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys

import keras
from keras import layers

train_dir, test_dir, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
keras.utils.set_random_seed(seed)
read = dict(color_mode="grayscale", image_size=(28, 28), batch_size=128, verbose=False)
train, validation = keras.utils.image_dataset_from_directory(
    train_dir, validation_split=0.1, subset="both", seed=seed, **read
)
test = keras.utils.image_dataset_from_directory(test_dir, shuffle=False, **read)
model = keras.Sequential(
    [
        keras.Input((28, 28, 1)),
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
model.fit(train.cache(), validation_data=validation.cache(), epochs=15, verbose=0)
print(model.evaluate(test, verbose=0)[1])
"""


def run_script(script: Path, digits: Path, seed: int) -> tuple[float, float]:
    """(test accuracy, wall seconds) of the convnet script in a fresh interpreter."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script), str(digits / "train"), str(digits / "test"), str(seed)],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the convnet script failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1]), seconds


def run_experiment(
    manifest: Path, runs_dir: Path, seed: int, overrides: list[str]
) -> tuple[float, float]:
    """(test accuracy of the best candidate, wall seconds) of `submit.py --experiment mnist`."""
    sets = [f"data.source=csv:{manifest}", "gate.min=0.5", f"seeds=[{seed}]", *overrides]
    command = [sys.executable, str(ROOT / "pipelines" / "submit.py"), "--experiment", "mnist"]
    for value in sets:
        command += ["--set", value]
    command += ["--no-cache", "--runs-dir", str(runs_dir), "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 3):  # 3: the gate missed, the run itself went through
        raise SystemExit(f"the mnist experiment failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    return float(result["summary"]["best"]["metrics"]["accuracy"]), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"alternations (>= {ROUNDS})")
    add_set_argument(parser)
    args = parser.parse_args(argv)
    accuracy: dict[str, list[float]] = {"experiment": [], "script": []}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        manifest = make_digit_source(work / "digits", args.images)
        script = work / "convnet.py"
        script.write_text(SCRIPT)

        def side(
            name: str, measure: Callable[[int], tuple[float, float]]
        ) -> Callable[[int], float]:
            def timed(round_: int) -> float:
                value, seconds = measure(round_)
                accuracy[name].append(value)
                print(
                    f"  round {round_}: {name:<10} accuracy {value:.4f} {seconds:6.1f} s",
                    flush=True,
                )
                return seconds

            return timed

        sides = alternate(
            {
                "experiment": side(
                    "experiment",
                    lambda r: run_experiment(manifest, work / f"runs-{r}", r, args.overrides),
                ),
                "script": side("script", lambda r: run_script(script, work / "digits", r)),
            },
            args.rounds,
            warmup=0,
        )
    print(f"mnist experiment vs the convnet script, {args.images} made digits, one seed a round:")
    for name in ("experiment", "script"):
        values = accuracy[name]
        print(
            f"  {name:<10} test accuracy {100 * statistics.mean(values):.2f}% "
            f"+- {100 * statistics.stdev(values):.2f}   wall {sides.median(name):6.1f} s"
        )
    print(f"  time ratio  : {sides.ratio('experiment', 'script')}  (goal <= 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
