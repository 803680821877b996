"""The real set's accuracy on two halves split by model: one half to tune the detectors on, one held out.

    python bench/diagnose_real_split.py [--only tuning|heldout|all] [--errors] [--mode MODE] [--json OUT]
    python bench/diagnose_real_split.py --data tests/data/diagnose_real_fresh.jsonl     (another set, scored whole)

tests/data/diagnose_real.jsonl has 42 samples from each of ten checkpoints (model, step). The halves are fixed
here, each with gptlab models of both depths, two peer models and every language (each checkpoint answered
the same 21 probes twice):
* tuning: gptlab-d4 steps 300 and 1,200, gptlab-d6 step 200, nanochat-d2, llmc-tiny;
* held out: gptlab-d4 step 600, gptlab-d6 steps 100 and 400, nanogpt-char, hf-gpt2-200steps.
Errors are read on the tuning half only; the held-out half is scored to see whether a change generalises.
Prints precision / recall / positives per mode and micro P / R / F1 (gptlab.diagnose.scoring, the scoring of
tests/test_diagnose_accuracy.py) on each half and on all 420. `--errors` also lists the printed halves' false
negatives and false positives per mode (`--mode` to pick one), with the completion and the evidence. While
tuning, run with `--only tuning --errors`: the held-out half is then neither scored nor printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptlab.diagnose import diagnose_many
from gptlab.diagnose.io import sample_from_dict
from gptlab.diagnose.scoring import micro, render, score
from gptlab.sandbox import isolation

REAL = Path(__file__).resolve().parents[1] / "tests" / "data" / "diagnose_real.jsonl"
TUNING = {("gptlab-d4", 300), ("gptlab-d4", 1200), ("gptlab-d6", 200), ("nanochat-d2", 60), ("llmc-tiny", None)}


def half(row) -> str:
    return "tuning" if (row["model"], row["step"]) in TUNING else "heldout"


def errors(rows, diagnoses, only_mode=None) -> str:
    out = []
    modes = sorted({m for r in rows for m in r["labels"]} | {m for d in diagnoses for m in d.failures})
    for mode in modes:
        if only_mode and mode != only_mode:
            continue
        for kind, pick in (("FN", lambda r, d: mode in r["labels"] and mode not in d.failures),
                           ("FP", lambda r, d: mode not in r["labels"] and mode in d.failures)):
            hits = [(r, d) for r, d in zip(rows, diagnoses) if pick(r, d)]
            out.append(f"\n===== {mode} {kind}: {len(hits)}")
            for r, d in hits:
                out.append(f"--- {r['id']} [{r.get('language') or 'prose'}] labels={r['labels']} "
                           f"found={d.failures}")
                out.append(f"    metrics={json.dumps(d.metrics.get(mode, {}))} evidence="
                           f"{json.dumps(d.evidence.get(mode, {}))[:300]}")
                out.append("    " + repr(r["completion"][:600]))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("tuning", "heldout", "all"), help="score this part only")
    ap.add_argument("--errors", action="store_true", help="list false negatives and false positives")
    ap.add_argument("--mode")
    ap.add_argument("--json", type=Path, help="write the per-half tables here")
    ap.add_argument("--data", type=Path, default=REAL, help="labelled samples (default: the real set)")
    args = ap.parse_args()
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.data.resolve() != REAL.resolve():
        if args.only in ("tuning", "heldout"):
            ap.error(f"--only {args.only}: the halves are the real set's; --data {args.data} is scored whole")
        args.only = "all"
    if args.only in ("tuning", "heldout"):
        rows = [r for r in rows if half(r) == args.only]
    diagnoses = diagnose_many([sample_from_dict(r) for r in rows], execute=isolation() is not None)
    tables = {}
    for name in (args.only,) if args.only else ("tuning", "heldout", "all"):
        pick = [i for i, r in enumerate(rows) if name == "all" or half(r) == name]
        sub_rows, sub_diag = [rows[i] for i in pick], [diagnoses[i] for i in pick]
        table = score(sub_rows, sub_diag)
        tables[name] = {"modes": table, "micro": micro(table),
                        "checkpoints": sorted({f"{r['model']}@{r['step']}" for r in sub_rows})}
        print(f"\n== {name}: {len(pick)} samples, {', '.join(tables[name]['checkpoints'])}")
        print(render({m: t for m, t in table.items() if t["tp"] + t["fn"] + t["fp"]}))
        if args.errors:
            print(errors(sub_rows, sub_diag, args.mode))
    if args.json:
        args.json.write_text(json.dumps(tables, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
