"""The failure modes in report order, and which samples each is judged on, read from the detector registry.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_registry.py

MODES is a public contract (README's "Failure modes" table, the report, stored findings list the modes in this
order). Each mode's name and scope are declared once, by `@registry.detector` in the mode's own module; the
order is given here by listing the detectors, because the order in which modules happen to be imported is not
a contract (tests/test_diagnose_registry.py checks that every registered detector is listed).
"""

from __future__ import annotations

from gptlab.diagnose.hallucinated_section import hallucinated_section
from gptlab.diagnose.invented_words import invented_words
from gptlab.diagnose.malformed_figure import malformed_figure
from gptlab.diagnose.missing_requirement import missing_requirement
from gptlab.diagnose.no_code import no_code
from gptlab.diagnose.number_fixation import number_fixation
from gptlab.diagnose.prompt_echo import prompt_echo
from gptlab.diagnose.registry import Detector, registration
from gptlab.diagnose.repetition_loop import repetition_loop
from gptlab.diagnose.syntax_error import syntax_error
from gptlab.diagnose.test_failure import judge_test_outcome
from gptlab.diagnose.topic_drift import topic_drift
from gptlab.diagnose.word_fixation import word_fixation

DETECTORS: tuple[Detector, ...] = tuple(registration(f) for f in (
    prompt_echo, repetition_loop, word_fixation, number_fixation, topic_drift, invented_words, no_code, syntax_error,
    judge_test_outcome, missing_requirement, hallucinated_section, malformed_figure,
))

MODES: tuple[str, ...] = tuple(d.mode for d in DETECTORS)
PROSE_MODES: tuple[str, ...] = tuple(d.mode for d in DETECTORS if d.scope == "prose")
CODE_MODES: tuple[str, ...] = tuple(d.mode for d in DETECTORS if d.scope == "code")
