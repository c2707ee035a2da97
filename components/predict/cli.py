"""`python -m components.predict`: top-k classes of image files with a trained Model.

The model's card says how to prepare the input (size, channels; raw [0, 255] pixels, the model
normalises), and `load_classifier` hides the framework, so keras and transformers models work
alike.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from components.common.files import display_name
from components.common.pixels import IMAGE_SUFFIXES, ImageReadError, load_image
from components.spec.export import EXPORT_FORMATS, NATIVE

EXIT_OK, EXIT_ERROR = 0, 2
# TensorFlow's C++ start-up lines (oneDNN, CPU features, absl's "before InitializeLog") are
# not for a user of predict. TensorFlow 2.21 writes them before its log level is read, so the
# process's stderr is held while the model loads (TF_CPP_MIN_LOG_LEVEL=0 shows them).
SHOW_START_UP = "0"

EPILOG = """\
examples:
  python -m components.predict --model runs/registry/pets-classifier/v3 photo.jpg
  python -m components.predict --model MODEL_DIR images/ --top-k 3
  python -m components.predict --model MODEL_DIR 'images/**/*.png' --json
  python -m components.predict --model runs/registry/pets-classifier/v3 --format tflite_int8 photo.jpg
  python -m components.predict --model runs/registry/pets-classifier/v3 --output predictions.csv images/

IMAGE may be a file, a folder (searched recursively for image files) or a quoted glob pattern.
MODEL_DIR is the Model artifact the train step wrote (model_card.json plus keras/ or hf/), a
registry version folder, or a registered model's folder (its latest version is used). --format runs one of the version's exported files (export/) with its own
runtime; every format takes the same images and prints the same kind of top-k output.
--output streams any number of files into a CSV (path, class_N, probability_N, reason) or JSON
Lines file, in bounded memory, with a progress bar; unreadable files get a row with the reason.

exit codes: 0 every image was scored; 2 the model could not be loaded, no image matched, or
some images could not be read (the others are still scored and printed)
"""


@dataclass
class Inputs:
    paths: list[Path] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m components.predict",
        description="Print the most probable classes of images with a trained model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="MODEL_DIR",
        type=Path,
        help="Model artifact folder (model_card.json plus keras/ or hf/) or registry version folder",
    )
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files, folders or quoted glob patterns"
    )
    parser.add_argument(
        "-k",
        "--top-k",
        type=int,
        default=5,
        metavar="K",
        help="how many classes to print per image (default 5; at most the number of classes)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout (results and errors) for scripts",
    )
    parser.add_argument(
        "--format",
        default=NATIVE,
        choices=[NATIVE, *EXPORT_FORMATS],
        help="which of the registered version's files to run (default: the native model)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="write every file's top-k to FILE (.csv or .jsonl) as a stream instead of printing",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        metavar="N",
        help="images per forward pass (default 32)",
    )
    return parser


def expand_inputs(arguments: Sequence[str]) -> Inputs:
    """Files, folders (recursive, image suffixes) and glob patterns -> unique files in order."""
    found = Inputs()
    seen: set[Path] = set()

    def add(path: Path) -> None:
        if path not in seen:
            seen.add(path)
            found.paths.append(path)

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            # Not only regular files: a pipe or a device named like an image gets its reason.
            files = sorted(
                p for p in path.rglob("*") if not p.is_dir() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
                found.problems.append(
                    {"path": argument, "error": f"folder has no image files ({suffixes})"}
                )
            for file in files:
                add(file)
        elif path.is_file():
            add(path)
        elif any(c in argument for c in "*?["):
            matches = sorted(
                Path(m) for m in glob.glob(argument, recursive=True) if Path(m).is_file()
            )
            if not matches:
                found.problems.append({"path": argument, "error": "pattern matched no files"})
            for match in matches:
                add(match)
        else:
            found.problems.append({"path": argument, "error": "no such file or folder"})
    return found


def latest_version(path: Path) -> Path:
    """A registered model's folder (`<registry>/<name>`) -> its latest version; else `path`."""
    from components.common.model_card import CARD_FILE
    from components.register.folders import versions

    if not path.is_dir() or (path / CARD_FILE).exists():
        return path
    found = versions(path)
    if found:
        print(f"using {found[-1]} (the latest of {len(found)} version(s))", file=sys.stderr)
        return found[-1]
    return path


def _batches(items: Iterable[Path], size: int) -> Iterator[list[Path]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def top_classes(
    probabilities: np.ndarray, class_names: Sequence[str], k: int
) -> list[dict[str, Any]]:
    """The k most probable classes of one probability row, most probable first."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [
        {"class": class_names[i], "index": int(i), "probability": float(probabilities[i])}
        for i in order
    ]


def predict_files(
    classifier: Any, paths: Iterable[Path], top_k: int, batch_size: int = 32
) -> Iterator[dict[str, Any]]:
    """Yield `{path, top}` per readable image or `{path, error}` per unreadable one, in order."""
    card = classifier.card
    size = (int(card.input_size[0]), int(card.input_size[1]))
    for batch in _batches(paths, batch_size):
        images, readable = [], []
        outcomes: dict[Path, dict[str, Any]] = {}
        for path in batch:
            try:
                images.append(load_image(path, size, card.channels))
                readable.append(path)
            except ImageReadError as exc:
                outcomes[path] = {"path": display_name(str(path)), "error": str(exc)}
        if images:
            probabilities = classifier.predict(np.stack(images))
            for path, row in zip(readable, probabilities, strict=True):
                outcomes[path] = {
                    "path": display_name(str(path)),
                    "top": top_classes(row, card.class_names, top_k),
                }
        for path in batch:
            yield outcomes[path]


def _format(outcome: dict[str, Any], width: int) -> str:
    lines = [outcome["path"]]
    for entry in outcome["top"]:
        lines.append(f"  {entry['class']:<{width}}  {entry['probability']:.4f}")
    return "\n".join(lines)


def _error(message: str) -> None:
    print(f"error: {display_name(message)}", file=sys.stderr)


def _load(args: argparse.Namespace) -> Any:
    """The classifier `--model` and `--format` name; raises ModelLoadError with what to fix."""
    return load_version(args.model, args.format)


def load_version(model: Path, format: str = NATIVE) -> Any:
    """The classifier of a Model artifact or registry version folder `model`: the native model,
    or (`format`) one of the version's exported files with its runtime. Raises ModelLoadError
    with what to fix."""
    from pydantic import ValidationError

    from components.models.loading import ModelLoadError, load_classifier, resolve_model_dir

    model_dir = resolve_model_dir(model)
    try:
        if format == NATIVE:
            return load_classifier(model_dir)
        from components.common.model_card import ModelCard
        from components.export.runtimes import ExportMissingError, load_version_export

        try:
            return load_version_export(model, format, ModelCard.load(model_dir))
        except ExportMissingError as exc:
            raise ModelLoadError(str(exc)) from None
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ModelLoadError(str(exc)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ModelLoadError(
            f"{model_dir / 'model_card.json'} is not a valid model card: {field}: {first['msg']}; "
            "was it written by this project's train step?"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load the model in {model}: {exc}") from None


def _check_args(args: argparse.Namespace) -> str | None:
    if args.top_k < 1:
        return f"--top-k must be at least 1 (got {args.top_k})"
    if args.batch_size < 1:
        return f"--batch-size must be at least 1 (got {args.batch_size})"
    if args.output is not None:
        from components.predict.batch import OUTPUT_SUFFIXES

        if args.output.suffix.lower() not in OUTPUT_SUFFIXES:
            return f"--output {args.output}: name a .csv or .jsonl file (e.g. predictions.csv)"
        if args.json:
            return "--json prints to the terminal and --output writes a file; pass one of them"
    return None


@contextlib.contextmanager
def quiet_start_up() -> Iterator[None]:
    """Hold what native code writes to file descriptor 2 inside the block (the frameworks'
    start-up lines); it is written out after all when the block raises, so no error is lost."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == SHOW_START_UP:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            os.write(2, held.read())
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    usage = _check_args(args)
    if usage:
        _error(usage)
        return EXIT_ERROR
    from components.models.loading import ModelLoadError, resolve_model_dir

    try:
        args.model = latest_version(args.model)
        resolve_model_dir(args.model)
    except ModelLoadError as exc:
        _error(str(exc))
        return EXIT_ERROR
    if args.output is not None:
        return _predict_to_file(args)
    inputs = expand_inputs(args.images)
    for problem in inputs.problems:
        _error(f"{problem['path']}: {problem['error']}")
    if not inputs.paths:
        _error(
            "no images matched: "
            + " ".join(args.images)
            + "; pass image files, folders or glob patterns"
        )
        return EXIT_ERROR
    try:
        with quiet_start_up():
            classifier = _load(args)
    except ModelLoadError as exc:
        _error(str(exc))
        return EXIT_ERROR
    return _print_predictions(args, classifier, inputs)


def _print_predictions(args: argparse.Namespace, classifier: Any, inputs: Inputs) -> int:
    class_names = classifier.card.class_names
    top_k = min(args.top_k, len(class_names))
    width = max(len(name) for name in class_names)
    results, errors = [], list(inputs.problems)
    for outcome in predict_files(classifier, inputs.paths, top_k, args.batch_size):
        if "error" in outcome:
            errors.append(outcome)
            _error(f"{outcome['path']}: {outcome['error']}; skipped")
            continue
        results.append(outcome)
        if not args.json:
            print(_format(outcome, width), flush=True)
    if args.json:
        document = {
            "model": str(args.model),
            "model_name": classifier.card.name,
            "framework": classifier.card.framework,
            "format": args.format,
            "top_k": top_k,
            "results": results,
            "errors": errors,
        }
        print(json.dumps(document, indent=2))
    if errors:
        _error(f"{len(errors)} input(s) could not be scored; {len(results)} image(s) were")
        return EXIT_ERROR
    return EXIT_OK


def _predict_to_file(args: argparse.Namespace) -> int:
    """Stream every input into `--output`; memory does not grow with the number of files."""
    import time

    from components.common.progress import progress
    from components.models.loading import ModelLoadError
    from components.predict.batch import RowWriter, count_inputs, stream_inputs

    total = count_inputs(args.images)
    if total == 0:
        for item in stream_inputs(args.images):
            if isinstance(item, tuple):
                _error(f"{item[0]}: {item[1]}")
        _error("no images matched: " + " ".join(args.images))
        return EXIT_ERROR
    try:
        with quiet_start_up():
            classifier = _load(args)
    except ModelLoadError as exc:
        _error(str(exc))
        return EXIT_ERROR
    top_k = min(args.top_k, len(classifier.card.class_names))
    problems: list[tuple[str, str]] = []

    def files() -> Iterator[Path]:
        for item in stream_inputs(args.images):
            if isinstance(item, Path):
                yield item
            else:
                problems.append(item)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with args.output.open("w", newline="", encoding="utf-8") as handle:
        writer = RowWriter(handle, args.output.suffix.lower(), top_k)
        outcomes = predict_files(classifier, files(), top_k, args.batch_size)
        writer.write_all(progress(outcomes, total, f"predict ({args.format})"))
    seconds = max(time.monotonic() - started, 1e-9)
    for argument, problem in problems:
        _error(f"{argument}: {problem}")
    print(
        f"wrote {writer.rows} row(s) to {args.output}: {writer.scored} image(s) scored in "
        f"{seconds:.1f} s ({writer.scored / seconds:.1f} images/s)",
        file=sys.stderr,
    )
    if writer.unreadable or problems:
        _error(
            f"{writer.unreadable} file(s) could not be read (their rows give the reason)"
            + (f"; {len(problems)} input(s) matched nothing" if problems else "")
        )
        return EXIT_ERROR
    return EXIT_OK
