"""Validation errors in the experiment's words: one line per problem, with the field, what is
wrong, the value and who set it (the file or a `--set`)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from components.spec import SLUG_PATTERN
from pipelines.config.schema import Experiment
from pipelines.experiment_file import clip

SLUG_RULE = (
    "names may hold lower-case letters, digits and '-' (not '_'), start and end with a letter "
    "or digit, and have at most 40 characters"
)


def format_validation_error(
    exc: ValidationError, source: str, overrides: dict[str, list[str | int]] | None = None
) -> str:
    """One line per problem: the field, what is wrong, the value (cut short), who set it.

    `overrides` maps each `--set` argument to the field path it set: a problem in (or below)
    such a field is blamed on that `--set`, not on the file.
    """
    lines = []
    blamed = 0
    for error in exc.errors():
        loc = list(error["loc"])
        field = ".".join(str(p) for p in loc) or "(top level)"
        value = error.get("input")
        shown = (
            ""
            if error["type"] in ("missing",) or isinstance(value, dict)
            else f" (got {clip(repr(value))})"
        )
        # The last --set that wrote this field, or a section above or below it.
        blame = next(
            (
                f" [from --set {clip(override)}]"
                for override, path in reversed((overrides or {}).items())
                if loc and (loc[: len(path)] == path or path[: len(loc)] == loc)
            ),
            "",
        )
        blamed += bool(blame)
        lines.append(f"  {field}: {clip(_message(error, loc), 400)}{shown}{blame}")
    origin = f"--set ({source})" if blamed == len(lines) else source
    return "\n".join([f"{origin}: {exc.error_count()} problem(s) in the experiment", *lines])


def _message(error: Any, loc: list[Any]) -> str:
    """What is wrong, in the experiment's words."""
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        return "unknown field" + _suggestion(loc)
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "string_pattern_mismatch" and (
        error.get("ctx", {}).get("pattern") == SLUG_PATTERN
    ):
        fixed = re.sub(r"[^a-z0-9-]+", "-", str(value).lower()).strip("-")[:40].strip("-")
        return f"not a valid name: {SLUG_RULE}" + (f" (e.g. {fixed})" if fixed else "")
    return str(error["msg"]).removeprefix("Value error, ")


def _suggestion(loc: list[Any]) -> str:
    """'; did you mean epochs?' for the closest field of the model that holds loc[-1]."""
    import difflib

    model: Any = Experiment
    for part in loc[:-1]:
        model = _inner_model(model, part)
        if model is None:
            return ""
    names = [f.alias or name for name, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]}?"
    return f"; {model.__name__} takes {', '.join(names)}"


def _inner_model(model: Any, part: Any) -> Any:
    """The pydantic model one step down `part` from `model` (a field, or a list's item)."""
    from typing import get_args, get_origin

    from pydantic import BaseModel

    if isinstance(part, int):
        return model
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    field = fields.get(part) or model.model_fields.get(part)
    if field is None:
        return None
    pending = [field.annotation]
    while pending:
        annotation = pending.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        if get_origin(annotation) is not None:
            pending.extend(get_args(annotation))
    return None
