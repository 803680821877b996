"""The detector registry: each failure mode's module declares its mode once, with `@detector(mode, scope=...)`.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_registry.py

`detector("word_fixation", scope="prose")` records the decorated function as the detector of that mode and
returns it unchanged. The scope says which samples the mode is judged on: "all" (every sample), "prose" (no
`language`) or "code" (`language` given). modes.py reads the registry to build MODES and the per-scope lists;
this module imports nothing of the package, so every detector module can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# Bump when any threshold or detector logic changes: stored findings are keyed by it.
DETECTOR_VERSION = "11"

SCOPES = ("all", "prose", "code")


@dataclass(frozen=True)
class Detector:
    mode: str
    scope: str                # one of SCOPES
    function: Callable        # decides the mode for one sample (its arguments differ by mode)
    module: str               # the module that declared it (named after the mode)


_DETECTORS: dict[str, Detector] = {}


def detector(mode: str, *, scope: str):
    """Declares the decorated function as the detector of `mode`; one detector per mode."""
    if scope not in SCOPES:
        raise ValueError(f"detector {mode!r}: scope must be one of {', '.join(SCOPES)}, got {scope!r}")

    def register(function):
        if mode in _DETECTORS:
            raise ValueError(f"two detectors for mode {mode!r}: {_DETECTORS[mode].module} and "
                             f"{function.__module__}")
        _DETECTORS[mode] = Detector(mode, scope, function, function.__module__)
        return function

    return register


def registered() -> dict[str, Detector]:
    """Every declared detector, by mode (those whose modules have been imported)."""
    return dict(_DETECTORS)


def registration(function) -> Detector:
    """The Detector that `function` was declared as; LookupError when it is not a registered detector."""
    for d in _DETECTORS.values():
        if d.function is function:
            return d
    raise LookupError(f"{function.__module__}.{function.__qualname__} is not a registered detector")
