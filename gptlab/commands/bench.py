"""`gptlab bench`: the command's flags and its call of the benchmark job (gptlab/evaluate/benchmarks.py).

    gptlab bench runs/d12 --tasks hellaswag,arc_easy --db results.sqlite
    gptlab bench ckpt.pt --tasks my_task --include-path my_tasks/ --limit 100 --json
    python -m pytest tests/test_benchmarks.py

A command of its own rather than flags of `gptlab eval`: eval's flags (suite, temperatures, lengths, samples,
top-k/p, --no-probes ...) all concern bits per byte and probe sampling and none applies to an lm-eval task,
while a task's (n-shot, limit, task folder, batch size) mean nothing to bpb or probes; the flags are named as
lm-eval names them. cli.py registers it (`COMMANDS["bench"]`); importing this module stays light (the job,
torch and lm-eval are imported when the command runs).
"""

from __future__ import annotations

import json
import sys

HELP = "score checkpoints on lm-evaluation-harness tasks (hellaswag, arc_easy, ...), cached in the store"


def add_arguments(p, db: dict, device: dict) -> None:
    """The flags; `db` and `device` are the definitions cli.py shares between commands."""
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="checkpoint file, checkpoint folder, or run directory (all its steps), any format")
    p.add_argument("--tasks", required=True, help="lm-eval tasks, groups or tags, comma-separated (e.g. "
                   "hellaswag,arc_easy; `lm_eval ls tasks` lists them); their data sets come through Hugging Face "
                   "datasets (HF_DATASETS_OFFLINE=1: cached ones only)")
    p.add_argument("--num-fewshot", type=int, help="examples in each prompt (default: each task's own; a task "
                   "that fixes 0 keeps 0)")
    p.add_argument("--limit", help="documents per task: a number, or a fraction below 1 (default: all; a limited "
                   "score is stored apart from the full one)")
    p.add_argument("--include-path", metavar="DIR", help="a folder of task YAMLs of your own (lm-eval's format)")
    p.add_argument("--batch-size", type=int, help="rows per forward pass (default 16)")
    p.add_argument("--db", **db)
    p.add_argument("--json", action="store_true", help="print one JSON line per (model, step, task, metric) on "
                   "stdout (fields: docs/benchmarks.md)")
    p.add_argument("--device", **device)


def run(args) -> int:
    from gptlab.evaluate.benchmarks import run_benchmarks  # deferred: heavy (torch) and optional extra [bench]
    on_row = (lambda row: print(json.dumps(row), flush=True)) if args.json else None
    echo = (lambda line: print(line, file=sys.stderr)) if args.json else print     # stdout stays JSON
    run_benchmarks(args.paths, args.tasks, db=args.db, num_fewshot=args.num_fewshot, limit=args.limit,
                   include_path=args.include_path, batch_size=args.batch_size, device=args.device, on_row=on_row,
                   echo=echo)
    return 0
