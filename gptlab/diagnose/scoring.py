"""Precision and recall of every mode against hand labels: the scoring behind docs/failure_modes.md's tables.

    python -m pytest tests/test_diagnose_accuracy.py -s        (the written and real sets' tables)
    python bench/diagnose_real_split.py                         (the real set, split by model)

`score(rows, diagnoses)` counts, for each mode of MODES, the samples both flagged and labelled (tp), flagged
only (fp) and labelled only (fn); each row is a labelled input line (its "labels" list), each diagnosis the
detectors' output for it. `micro(table)` sums those counts over the modes (the detectors' modes only: a label
with no detector, such as word_salad, is not in MODES). `render(table)` is the printed table.
"""

from __future__ import annotations

from gptlab.diagnose.modes import MODES


def score(rows, diagnoses, modes=MODES) -> dict:
    table = {}
    for mode in modes:
        tp = sum(mode in d.failures and mode in r["labels"] for r, d in zip(rows, diagnoses))
        fp = sum(mode in d.failures and mode not in r["labels"] for r, d in zip(rows, diagnoses))
        fn = sum(mode not in d.failures and mode in r["labels"] for r, d in zip(rows, diagnoses))
        table[mode] = {"tp": tp, "fp": fp, "fn": fn,
                       "precision": tp / (tp + fp) if tp + fp else None,
                       "recall": tp / (tp + fn) if tp + fn else None}
    return table


def micro(table) -> dict:
    """Precision, recall and F1 over every (sample, mode) pair of the table's modes."""
    tp, fp, fn = (sum(t[k] for t in table.values()) for k in ("tp", "fp", "fn"))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def render(table) -> str:
    lines = [f"{'mode':22} {'labelled':>8} {'found':>6} {'precision':>9} {'recall':>7}"]
    for mode, t in table.items():
        p = "-" if t["precision"] is None else f"{t['precision']:.2f}"
        r = "-" if t["recall"] is None else f"{t['recall']:.2f}"
        lines.append(f"{mode:22} {t['tp'] + t['fn']:8d} {t['tp'] + t['fp']:6d} {p:>9} {r:>7}")
    m = micro(table)
    lines.append(f"{'micro':22} {m['tp'] + m['fn']:8d} {m['tp'] + m['fp']:6d} {m['precision']:9.2f} "
                 f"{m['recall']:7.2f}   F1 {m['f1']:.2f}")
    return "\n".join(lines)
