"""Run the failure-mode detectors on stored samples that have no findings for the current detectors.

    gptlab eval runs/demo          (after sampling; `--no-diagnose` skips this step)
    python -m pytest tests/test_eval.py

Findings are keyed by (sample, DETECTOR_VERSION): a new detector version re-diagnoses every stored sample
once, without sampling anything again. `passed` is True/False when the probe's tests were executed, None
when the probe has no tests or execution was off. Each chunk of findings is one transaction.
"""

from __future__ import annotations

import json

from gptlab.diagnose import DETECTOR_VERSION, Sample, diagnose_many


def _sample(row: dict) -> Sample:
    spec = json.loads(row["spec_json"] or "{}")
    return Sample(id=str(row["id"]), domain=row["domain"], prompt=row["prompt"], completion=row["completion"],
                  language=row["language"], code_prefix=spec.get("code_prefix"), tests=spec.get("tests"),
                  requires=tuple(spec.get("requires") or ()), schema=spec.get("schema"),
                  entry_point=spec.get("entry_point"))


def diagnose_stored(store, weights_hashes: list[str], *, execute: bool = True, unsafe_exec: bool = False,
                    workers: int | None = None, chunk: int = 64, on_done=None) -> tuple[int, int]:
    """Diagnose the samples of these models that lack findings; returns (computed, already stored)."""
    todo = store.samples_without_findings(DETECTOR_VERSION, weights_hashes)
    marks = ",".join("?" * len(weights_hashes))
    total = store.query(f"SELECT COUNT(*) AS n FROM samples WHERE weights_hash IN ({marks})",
                        tuple(weights_hashes))[0]["n"]
    cached = total - len(todo)
    if on_done is not None and cached:
        on_done(cached)
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        diagnoses = diagnose_many([_sample(r) for r in part], execute=execute, unsafe_exec=unsafe_exec,
                                  workers=workers)
        store.put_findings([{"sample_id": int(d.id), "detector_version": DETECTOR_VERSION,
                             "failures": list(d.failures), "metrics": d.metrics, "evidence": d.evidence,
                             "passed": d.passed} for d in diagnoses])
        if on_done is not None:
            on_done(len(part))
    return len(todo), cached
