"""`python -m components.predict`: top-k classes of image files with a trained Model.

The model's card says how to prepare the input (size, channels; raw [0, 255] pixels, the model
normalises), and `load_classifier` hides the framework, so keras and transformers models work
alike.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from components.common.pixels import IMAGE_SUFFIXES, ImageReadError, load_image

EXIT_OK, EXIT_ERROR = 0, 2

EPILOG = """\
examples:
  python -m components.predict --model runs/registry/pets-classifier/v3 photo.jpg
  python -m components.predict --model MODEL_DIR images/ --top-k 3
  python -m components.predict --model MODEL_DIR 'images/**/*.png' --json

IMAGE may be a file, a folder (searched recursively for image files) or a quoted glob pattern.
MODEL_DIR is the Model artifact the train step wrote (model_card.json plus keras/ or hf/), a
registry version folder, or a registered model's folder (its latest version is used).

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
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
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
    from components.register.run import versions

    if not path.is_dir() or (path / CARD_FILE).exists():
        return path
    found = versions(path)
    if found:
        print(f"using {found[-1]} (the latest of {len(found)} version(s))", file=sys.stderr)
        return found[-1]
    return path


def _batches(items: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
    classifier: Any, paths: list[Path], top_k: int, batch_size: int = 32
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
                outcomes[path] = {"path": str(path), "error": str(exc)}
        if images:
            probabilities = classifier.predict(np.stack(images))
            for path, row in zip(readable, probabilities, strict=True):
                outcomes[path] = {
                    "path": str(path),
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
    print(f"error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top_k < 1:
        _error(f"--top-k must be at least 1 (got {args.top_k})")
        return EXIT_ERROR
    if args.batch_size < 1:
        _error(f"--batch-size must be at least 1 (got {args.batch_size})")
        return EXIT_ERROR
    from components.models.loading import ModelLoadError, load_classifier, resolve_model_dir

    try:
        model_dir = resolve_model_dir(latest_version(args.model))
    except ModelLoadError as exc:
        _error(str(exc))
        return EXIT_ERROR
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

    from pydantic import ValidationError

    try:
        classifier = load_classifier(model_dir)
    except (ModelLoadError, FileNotFoundError, NotADirectoryError) as exc:
        _error(str(exc))
        return EXIT_ERROR
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        _error(
            f"{model_dir / 'model_card.json'} is not a valid model card: {field}: {first['msg']}; "
            "was it written by this project's train step?"
        )
        return EXIT_ERROR
    except (OSError, ValueError) as exc:
        _error(f"could not load the model in {args.model}: {exc}")
        return EXIT_ERROR

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
            "top_k": top_k,
            "results": results,
            "errors": errors,
        }
        print(json.dumps(document, indent=2))
    if errors:
        _error(f"{len(errors)} input(s) could not be scored; {len(results)} image(s) were")
        return EXIT_ERROR
    return EXIT_OK
