"""The base of every step config: strict about unknown keys, lenient about numbers as text."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    # YAML (and so --set) reads 8, 2024 or 123456789012 as numbers; text fields take them as text
    # (cpu_limit: 8, a numeric project, folder class names 0-9).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, coerce_numbers_to_str=True)
