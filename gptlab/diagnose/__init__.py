"""Automatic diagnosis of model samples: eleven named failure modes, each with its evidence and metrics.

    gptlab diagnose samples.jsonl [--json] [--no-exec] [--unsafe-exec]
    python -m pytest tests/test_diagnose_*.py

    from gptlab.diagnose import Sample, diagnose
    d = diagnose(Sample(id="1", domain="finance", prompt="Item 1A. Risk Factors\\n...", completion="..."))
    d.failures        # e.g. ["word_fixation", "hallucinated_section"]
    d.evidence        # {"word_fixation": {"word": "ecosystem", "count": 12, ...}, ...}

The modes, their definitions, thresholds and calibration are documented in docs/failure_modes.md. Each mode is
computed by the module named after it (prompt_echo.py, repetition_loop.py, word_fixation.py, number_fixation.py,
topic_drift.py, no_code.py, syntax_error.py, test_failure.py, missing_requirement.py, hallucinated_section.py,
malformed_figure.py), which declares it with `@registry.detector`; modes.py lists them in report order (MODES).
pipeline.py runs them on samples, program.py builds the program a code sample is judged on, rollup.py turns
findings into rates, pass@k and a verdict per domain, io.py reads JSONL and renders the table.
"""

from gptlab.diagnose.modes import MODES
from gptlab.diagnose.pipeline import diagnose, diagnose_many
from gptlab.diagnose.registry import DETECTOR_VERSION
from gptlab.diagnose.types import Diagnosis, Sample

__all__ = ["Sample", "Diagnosis", "diagnose", "diagnose_many", "MODES", "DETECTOR_VERSION"]
