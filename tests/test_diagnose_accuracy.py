"""Precision and recall of every mode on hand-labelled samples.

    python -m pytest tests/test_diagnose_accuracy.py -s        (prints the tables)

tests/data/diagnose_labelled.jsonl: 126 completions written in the style of 124M-model samples, every
domain and language, clean ones and hard negatives included; each line is an input line plus "labels",
the modes a careful reader assigns by the definitions in docs/failure_modes.md. It was written by the
detectors' author.
tests/data/diagnose_heldout.jsonl: 20 more on new probes, written after the thresholds were fixed and
scored once as they were.
tests/data/diagnose_blind*.jsonl: each written blind by a separate writer, who had the issue's definitions
of the modes and never saw the detectors, their thresholds or the other sets (docs/failure_modes.md,
"Accuracy").
tests/data/diagnose_real.jsonl: what real models wrote (gptlab models at three stages of training and the peer
checkpoints), labelled blind by two readers each, disagreements settled by a third (docs/failure_modes.md,
"Accuracy on real model output"). Modes added after the written sets (invented_words) are measured there.
tests/data/diagnose_real_fresh.jsonl: 252 more from a gptlab model trained with another seed and the peers at
other sampling seeds, labelled the same way after version 9; scored untouched by versions 9 and 10's first step,
then tuned on (docs/failure_modes.md, "A third labelling study").
tests/data/diagnose_real_fresh2.jsonl: 252 more (a depth-6 gptlab model trained with seed 11, the peers at
sampling seeds 5 and 6), labelled by the third study's guide and scored once, with version 10, then tuned on.
tests/data/diagnose_real_fresh3.jsonl: 252 more (a depth-4 gptlab model trained with seed 13, the peers at
sampling seeds 7 and 8), labelled by the same guide and scored once, with version 11 (0.90), then tuned on.
tests/data/diagnose_real_fresh4.jsonl: 252 more (a depth-4 gptlab model trained with seed 19, the peers at
sampling seeds 9 and 10), made and labelled after version 11 was fixed, scored once (0.91): never tuned on.
All five real sets carry labels given under the two written boundaries of the third study (tests/data/
labelling_guide.md).
The target is >= 0.9 for each mode; the assertions are regression floors, lower than the target, because
one sample moves a rate by ~0.1 at these sizes.
"""

import json
from pathlib import Path

import pytest

from gptlab.diagnose import MODES, diagnose_many
from gptlab.diagnose.io import sample_from_dict
from gptlab.diagnose.scoring import micro, render, score
from gptlab.sandbox import isolation

DATA = Path(__file__).parent / "data"
LABELLED, HELDOUT = DATA / "diagnose_labelled.jsonl", DATA / "diagnose_heldout.jsonl"
BLIND = sorted(DATA.glob("diagnose_blind*.jsonl"))
REAL = DATA / "diagnose_real.jsonl"
FRESH, FRESH2 = DATA / "diagnose_real_fresh.jsonl", DATA / "diagnose_real_fresh2.jsonl"
FRESH3, FRESH4 = DATA / "diagnose_real_fresh3.jsonl", DATA / "diagnose_real_fresh4.jsonl"
FLOOR = 0.7
REAL_MICRO_F1_FLOOR = 0.93
FRESH_MICRO_F1_FLOOR = 0.90
FRESH2_MICRO_F1_FLOOR = 0.92
FRESH3_MICRO_F1_FLOOR = 0.88
FRESH4_MICRO_F1_FLOOR = 0.89
# Modes that the written sets predate: they have no positives there (and must find none).
LATER_MODES = ("invented_words",)


def load(path):
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows, diagnose_many([sample_from_dict(r) for r in rows], execute=isolation() is not None)


@pytest.fixture(scope="module")
def labelled():
    return load(LABELLED)


def test_the_set_covers_every_domain_language_and_mode(labelled):
    rows, _ = labelled
    assert len(rows) >= 60
    assert {r["domain"] for r in rows} >= {"code", "general", "finance"}
    assert {r.get("language") for r in rows} >= {"python", "go", "javascript", "jsx", "sql", "java", None}
    counts = {m: sum(m in r["labels"] for r in rows) for m in MODES if m not in LATER_MODES}
    assert min(counts.values()) >= 7, counts
    assert sum(not r["labels"] for r in rows) >= 20


def below_floor(table) -> dict:
    if isolation() is None:
        table = {m: t for m, t in table.items() if m != "test_failure"}   # not executed: nothing to score
    return {m: (t["precision"], t["recall"]) for m, t in table.items()
            if t["tp"] + t["fn"] and (t["precision"] is None or t["precision"] < FLOOR or t["recall"] < FLOOR)}


def test_precision_and_recall_per_mode(labelled):
    rows, diagnoses = labelled
    table = score(rows, diagnoses)
    print("\n" + render(table))
    misses = below_floor(table)
    assert not misses, f"below {FLOOR}: {misses}\n{render(table)}"


def test_held_out_samples():
    rows, diagnoses = load(HELDOUT)
    table = score(rows, diagnoses)
    print("\nheld out\n" + render(table))
    wrong = [r["id"] for r, d in zip(rows, diagnoses) if set(d.failures) != set(r["labels"])]
    assert len(wrong) <= 2, wrong


@pytest.mark.parametrize("path", BLIND, ids=lambda p: p.stem)
def test_blind_sets(path):
    rows, diagnoses = load(path)
    assert len(rows) >= 90 and sum(not r["labels"] for r in rows) >= 20
    table = score(rows, diagnoses)
    print(f"\n{path.name}\n" + render(table))
    assert min(t["tp"] + t["fn"] for m, t in table.items() if m not in LATER_MODES) >= 6, "every mode needs positives"
    assert all(table[m]["fp"] == 0 for m in LATER_MODES), "a later mode fires on the written sets"
    misses = below_floor(table)
    assert not misses, f"below {FLOOR}: {misses}\n{render(table)}"


def test_blind_sets_exist():
    assert BLIND, "tests/data/diagnose_blind*.jsonl missing"


def test_real_model_output():
    """At least 300 samples real models wrote, every domain and language; the floors apply to modes with >= 10
    positives (the others are too few to score)."""
    rows, diagnoses = load(REAL)
    assert len(rows) >= 300
    assert {r.get("language") for r in rows} >= {"python", "go", "jsx", "sql", "java", None}   # every language of the default suite
    assert len({(r["model"], r["step"]) for r in rows}) >= 8
    table = score(rows, diagnoses)
    print(f"\n{REAL.name}\n" + render(table))
    frequent = {m: t for m, t in table.items() if t["tp"] + t["fn"] >= 10}
    assert set(frequent) >= {"topic_drift", "invented_words", "no_code", "syntax_error"}
    misses = below_floor(frequent)
    assert not misses, f"below {FLOOR}: {misses}\n{render(table)}"
    # version 11 scores micro-F1 0.95 on the detectors' modes; a change that loses 2 points of it is a regression
    assert micro(table)["f1"] >= REAL_MICRO_F1_FLOOR, render(table)


@pytest.mark.parametrize("path,floor", [(FRESH, FRESH_MICRO_F1_FLOOR), (FRESH2, FRESH2_MICRO_F1_FLOOR),
                                        (FRESH3, FRESH3_MICRO_F1_FLOOR), (FRESH4, FRESH4_MICRO_F1_FLOOR)],
                         ids=["fresh", "fresh2", "fresh3", "fresh4"])
def test_fresh_real_model_output(path, floor):
    """More real samples, from a gptlab model and sampling seeds the first set does not have: the fresh set was
    scored untouched (versions 9 and 10's first step, 0.84 on its current labels) and then tuned on; fresh2 was
    scored once by version 10 (0.90) and fresh3 once by version 11 (0.90), each before it was tuned on; fresh4
    was made after version 11 was fixed and scored once (0.91), never tuned on (docs/failure_modes.md, "A third
    labelling study", "Version 11"). The floors catch a change that loses what generalises."""
    rows, diagnoses = load(path)
    assert len(rows) >= 250
    assert {r.get("language") for r in rows} >= {"python", "go", "jsx", "sql", "java", None}
    assert len({(r["model"], r["step"]) for r in rows}) >= 6
    table = score(rows, diagnoses)
    print(f"\n{path.name}\n" + render(table))
    assert micro(table)["f1"] >= floor, render(table)
