"""The `gptlab` commands that read checkpoints and stored results: models, compare, check, results.

Registered in cli.py's command table (cli_registry.py) after cli.py's own commands, so `gptlab --help`
lists them last. Each imports its library module when it runs (`# deferred:`), as in cli.py.

    gptlab models DIR           gptlab compare RUN_A RUN_B
    gptlab check CLAIMS.toml    gptlab results RUN --format csv --out DIR
    python -m pytest tests/test_models_cli.py tests/test_cli.py tests/test_compare.py tests/test_results.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gptlab.checkpoints.listing import json_lines, list_checkpoints, render
from gptlab.cli_registry import DB, DEVICE, command, parse_numbers, runs
from gptlab.compare.records import check_record, comparison_record
from gptlab.errors import GptlabError
from gptlab.store import Store

CLAIMS_FAILED = 3  # `gptlab check`: a claim did not hold (2 stays "bad input", 1 "unexpected error")
RESAMPLES = dict(type=int, default=2000, help="bootstrap resamples per interval (default 2000, at least 100)")


def _check_resamples(n: int) -> None:
    if n < 100:
        raise GptlabError(f"--resamples {n}: use at least 100")


@command("models", "list the checkpoints under PATH (nanoGPT, nanochat, llm.c, transformers, gptlab runs)")
def _models_args(p):
    p.add_argument("path", metavar="PATH", help="checkpoint file, checkpoint folder, run directory, or a folder "
                   "of them")
    p.add_argument("--json", action="store_true", help="one JSON object per checkpoint on stdout instead of the "
                   "table (fields: README)")


@runs("models")
def _models(args):
    infos, errors = list_checkpoints(args.path)
    if infos:
        if args.json:
            print(json_lines(infos))
        else:
            render(infos)
    for e in errors:
        print(f"gptlab: error: {e}", file=sys.stderr)
    return 2 if errors else 0


@command("compare", "models side by side: bpb, failure rates, pass@k, prompt length, with bootstrap intervals")
def _compare_args(p):
    p.add_argument("paths", nargs="+", metavar="PATH", help="run directory (its newest checkpoint), checkpoint, "
                   "or run name in the store; PATH@STEP picks a step. Missing results are evaluated first")
    p.add_argument("--db", **DB)
    p.add_argument("--out", default="compare", help="folder for compare.md and compare.html (default: compare)")
    p.add_argument("--suite", default="default", help="probe suite: 'default' or a TOML file")
    p.add_argument("--claims", metavar="FILE", help="also check this claims TOML and add its table")
    p.add_argument("--no-eval", action="store_true", help="use only what the store holds; never load a model")
    p.add_argument("--temperature", type=float, help="sampling temperature compared (default 0.8)")
    p.add_argument("--samples", type=int, default=8, help="samples per probe for missing results (default 8)")
    p.add_argument("--max-tokens", default="80,200", help="sample lengths for missing results (default 80,200)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed for missing results (default 0)")
    p.add_argument("--bpb", action="append", default=[], metavar="NAME=FILE",
                   help="score every model on these domains (default: the first gptlab run's val domains, "
                        "else the shipped corpus); repeatable")
    p.add_argument("--resamples", **RESAMPLES)
    p.add_argument("--device", **DEVICE)
    p.add_argument("--json", action="store_true", help="print the comparison's rows (and claims) as one JSON "
                   "document instead of the tables (fields: docs/compare.md); the page is still written")


@runs("compare")
def _compare(args):
    from gptlab.commands.compare import compare_paths  # deferred: heavy (torch)
    from gptlab.report.sections.claims import print_claims  # deferred: heavy (matplotlib)
    from gptlab.report.sections.compare import print_comparison  # deferred: heavy (matplotlib)
    _check_resamples(args.resamples)
    got = compare_paths(args.paths, db=args.db, out=args.out, suite=args.suite, claims=args.claims,
                        evaluate_missing=not args.no_eval, bpb_files=args.bpb or None, temperature=args.temperature,
                        resamples=args.resamples, samples=args.samples, seed=args.seed, device=args.device,
                        max_tokens=parse_numbers(args.max_tokens, int, "--max-tokens"))
    if got is None:             # a rank other than 0 under torchrun: it evaluated, rank 0 prints
        return 0
    if args.json:
        print(json.dumps(comparison_record(got["comparison"], got["claims"])))
    else:
        print_comparison(got["comparison"])
        if got["claims"] is not None:
            print_claims(got["claims"])
    print(f"wrote {got['markdown']} and {got['html']}", file=sys.stderr if args.json else sys.stdout)


@command("check", "check the claims of a TOML file against stored results: Statement | Verdict | Evidence")
def _check_args(p):
    p.add_argument("claims", metavar="CLAIMS.toml", help="claims file (format: docs/compare.md)")
    p.add_argument("--db", **DB)
    p.add_argument("--resamples", **RESAMPLES)
    p.add_argument("--fail-on", choices=("false", "inconclusive", "never"), default="false",
                   help="exit status 3 when a claim is false (default), also when one is inconclusive "
                        "('inconclusive'), or never ('never'); 0 otherwise, 2 for a bad file or store")
    p.add_argument("--json", action="store_true", help="print {title, claims: [statement, verdict, evidence, "
                   "margin, ...]} as JSON instead of the table (fields: docs/compare.md)")


@runs("check")
def _check(args):
    from gptlab.compare.claims import load_claims  # deferred: heavy (numpy, tree-sitter grammars)
    from gptlab.compare.claims_verdict import check, claims_failed  # deferred: heavy (numpy)
    from gptlab.report.sections.claims import print_claims  # deferred: heavy (matplotlib)
    _check_resamples(args.resamples)
    claims = load_claims(args.claims)
    if not Path(args.db).is_file():
        raise GptlabError(f"{args.db}: no results store here; evaluate the models first: gptlab eval PATH --db "
                          f"{args.db}")
    store = Store(args.db, readonly=True)
    try:
        results = check(claims, store, resamples=args.resamples)
    finally:
        store.close()
    if args.json:
        print(json.dumps(check_record(results, claims.title)))
    else:
        print_claims(results, claims.title)
    return CLAIMS_FAILED if claims_failed(results, args.fail_on) else 0


@command("results", "export the store's results for PATH to other tools: bpb, samples with findings, roll-ups "
         "(json, csv, parquet)")
def _results_args(p):
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a run directory (all its checkpoints), checkpoint(s), or a run name in the store")
    p.add_argument("--db", **DB)
    p.add_argument("--format", default="json", metavar="json|csv|parquet", help="json: one document (default); "
                   "csv, parquet: one file per table (bpb, samples, rollup) into the --out folder")
    p.add_argument("--out", metavar="FILE_OR_DIR", help="json: a file (default: stdout); csv, parquet: a folder "
                   "(required)")
    p.add_argument("--what", default="bpb,samples,rollup,benchmarks", help="tables, comma-separated (default: "
                   "all four; benchmarks: gptlab bench's scores; fields: docs/compare.md)")


@runs("results")
def _results(args):
    from gptlab.compare.results import export  # deferred: heavy (numpy and tree-sitter via gptlab.diagnose)
    got = export(args.db, args.paths, fmt=args.format, out=args.out, what=args.what)
    if isinstance(got, str):
        sys.stdout.write(got)
    else:
        print("wrote " + ", ".join(map(str, got)))
