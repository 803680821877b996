"""`gptlab diagnose FILE.jsonl`: its arguments and its one library call (the detectors are gptlab/diagnose/).

    gptlab diagnose samples.jsonl [--json] [--no-exec]
    python -m pytest tests/test_diagnose_cli.py

Registered in gptlab/cli.py's command table as ("diagnose", HELP, add_arguments, run).
"""

from __future__ import annotations

import sys

from gptlab.errors import GptlabError

HELP = "find named failure modes in model samples (JSONL), with evidence and metrics"


def add_arguments(p) -> None:
    p.add_argument("file", help="JSONL, one sample per line: {id, domain, prompt, completion, language?, "
                                "code_prefix?, tests?, requires?, schema?, entry_point?, probe?} "
                                "(modes and thresholds: docs/failure_modes.md). Lines that are not samples are "
                                "skipped with a warning (lines over 8 MiB unread); exit status 2 if none is one")
    p.add_argument("--json", action="store_true",
                   help="one JSON line per input line {id, failures, metrics, evidence, passed} instead of the table")
    p.add_argument("--no-exec", action="store_true", help="do not run tests (test_failure is then not checked)")
    p.add_argument("--unsafe-exec", action="store_true",
                   help="run tests even where no sandbox isolation is available (model code runs unisolated)")
    p.add_argument("--workers", type=int, help="processes for the detectors and sandboxes (default: all cores)")


def run(args) -> None:
    from gptlab.diagnose.io import diagnose_file, render_json_lines, render_report  # deferred: heavy (numpy)
    if args.workers is not None and args.workers < 1:
        raise GptlabError(f"--workers {args.workers}: must be >= 1")
    rows, results = diagnose_file(args.file, execute=not args.no_exec, unsafe_exec=args.unsafe_exec,
                                  workers=args.workers,
                                  warn=lambda m: print(f"gptlab: warning: {args.file}: {m}", file=sys.stderr))
    print(render_json_lines(results) if args.json else render_report(rows, results))
