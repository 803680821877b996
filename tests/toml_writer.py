"""TOML text for generated documents, for the fuzzing tests (tests/test_fuzz_config.py, test_fuzz_inputs.py):
every value written inline, so any nesting hypothesis builds becomes one line per top-level key."""

from __future__ import annotations

import datetime
import json
import math


def toml_key(k: str, ascii_only: bool = False) -> str:
    """A TOML basic string: JSON's escapes. `ascii_only` escapes everything beyond ASCII too, so an unpaired
    surrogate reaches the parser as a `\\ud800` escape (which TOML must reject) instead of as a character."""
    return json.dumps(k, ensure_ascii=ascii_only).replace("\x7f", "\\u007f")


def toml_value(v, ascii_only: bool = False) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return toml_key(v, ascii_only)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x, ascii_only) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k, ascii_only)} = {toml_value(x, ascii_only)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def dump(doc: dict, ascii_only: bool = False) -> str:
    return "".join(f"{toml_key(k, ascii_only)} = {toml_value(v, ascii_only)}\n" for k, v in doc.items())
