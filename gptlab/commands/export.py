"""`gptlab export`: its arguments and its one library call (the export itself is gptlab/export/hf_folder.py).

    gptlab export runs/demo --format hf --out demo_hf [--force]
    python -m pytest tests/test_export_hf.py

Registered in gptlab/cli.py's command table as ("export", HELP, add_arguments, run).
"""

from __future__ import annotations

import sys

HELP = "write a checkpoint as a Hugging Face folder (transformers loads it; logits equal gptlab's)"


def add_arguments(p) -> None:
    p.add_argument("path", metavar="PATH", help="checkpoint file or folder, run directory (its newest checkpoint), "
                   "or Hugging Face Hub id; any format gptlab reads")
    p.add_argument("--format", default="hf", metavar="hf", help="hf: a transformers folder (the only format; "
                   "GPT-2 family: a stock GPT2LMHeadModel, gptlab and nanochat: modelling code shipped in it)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new or empty)")
    p.add_argument("--force", action="store_true", help="replace DIR even when it is not empty")


def run(args) -> None:
    from gptlab.export.hf_folder import export_hf  # deferred: heavy (torch, transformers)
    out = export_hf(args.path, args.out, fmt=args.format, force=args.force,
                    say=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"wrote {out}")
