"""Automatic diagnosis of model samples: eleven named failure modes, each with its evidence and metrics.

    gptlab diagnose samples.jsonl [--json] [--no-exec] [--unsafe-exec]
    python -m pytest tests/test_diagnose_*.py

    from gptlab.evaluate.diagnose import Sample, diagnose
    d = diagnose(Sample(id="1", domain="finance", prompt="Item 1A. Risk Factors\\n...", completion="..."))
    d.failures        # e.g. ["word_fixation", "hallucinated_section"]
    d.evidence        # {"word_fixation": {"word": "ecosystem", "count": 12, ...}, ...}

The modes, their definitions, thresholds and calibration are documented in docs/failure_modes.md; one
module computes each (echo, repetition, fixation, drift, code, syntax, requirements/sql, tests_run, sec,
figures), program.py builds the program a code sample is judged on, rollup.py turns findings into rates,
pass@k and a verdict per domain, io.py reads JSONL and renders the table.
"""

from gptlab.evaluate.diagnose.pipeline import diagnose, diagnose_many
from gptlab.evaluate.diagnose.sample import MODES, Diagnosis, Sample

# Bump when any threshold or detector logic changes: stored findings are keyed by it.
DETECTOR_VERSION = "6"

__all__ = ["Sample", "Diagnosis", "diagnose", "diagnose_many", "MODES", "DETECTOR_VERSION"]
