"""The base of every step config: strict about unknown keys, lenient about numbers as text."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class Strict(BaseModel):
    # YAML (and so --set) reads 8, 2024 or 123456789012 as numbers; text fields take them as text
    # (cpu_limit: 8, a numeric project, folder class names 0-9).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, coerce_numbers_to_str=True)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads true as 1: `epochs: true` would train one epoch.
        values = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, bool) for v in values):
            field = cls.model_fields.get(info.field_name or "")
            if field is not None and _wants_number(field.annotation):
                raise ValueError("a number is expected here, not true/false")
        return value


def _wants_number(annotation: Any) -> bool:
    """Whether a field of this type takes numbers (int, float, their unions, lists, tuples)."""
    if annotation in (int, float):
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return any(
            isinstance(a, int | float) and not isinstance(a, bool) for a in get_args(annotation)
        )
    if origin is Annotated:
        return _wants_number(get_args(annotation)[0])
    if origin is None or origin is dict:
        return False
    return any(_wants_number(a) for a in get_args(annotation) if a is not Ellipsis)
