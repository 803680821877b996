"""The `gptlab` command: parses arguments and calls the library; no logic lives here.

    gptlab --help            lists the commands
    gptlab demo              trains a tiny model on the shipped corpus, evaluates it, writes the report

Each command imports its library module when it runs (`# deferred:` below), so that `gptlab --help` stays
instant: torch, matplotlib and the tree-sitter grammars take seconds to import. A `GptlabError` raised
anywhere becomes one line on stderr and exit status 2; set GPTLAB_DEBUG=1 to see the traceback of an
unexpected error instead of its one-line summary. The command table and the flags several commands share
live in cli_registry.py; the commands that read checkpoints and stored results (models, compare, check,
results) in cli_results.py.

    python -m pytest tests/test_cli_demo.py tests/test_models_cli.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from gptlab import __version__
from gptlab.cli_registry import COMMANDS, DB, DEVICE, command, parse_numbers, runs
from gptlab.commands import bench, diagnose_file, ladder_args
from gptlab.commands import export as export_command
from gptlab.errors import GptlabError
from gptlab.store import Store
from gptlab.trackers import LOG_HELP

COMMANDS["export"] = [export_command.HELP, export_command.add_arguments, export_command.run]   # commands/export.py


# ---------------------------------------------------------------- train / tokenizer / demo


@command("train", "train a GPT from a TOML config (checkpoints, per-domain val bpb, resume, DDP)")
def _train_args(p):
    p.add_argument("config", help="training config TOML, or a preset name: demo, d12, d20, d26 "
                   "(gptlab/presets/; configs/ has two more examples)")
    p.add_argument("--out", help="run directory (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=200 (repeatable)")
    p.add_argument("--device", **DEVICE)


@runs("train")
def _train(args):
    from gptlab.train import train_from_cli  # deferred: heavy (torch)
    train_from_cli(args.config, out=args.out, resume=args.resume, overrides=args.set, device=args.device)


@command("tokenizer", "train a byte-level BPE tokenizer on the corpora of a config")
def _tokenizer_args(p):
    sub = p.add_subparsers(dest="action", required=True)
    t = sub.add_parser("train", help="train and save tokenizer.json")
    t.add_argument("config", help="training config TOML (its [data] sources are the training text)")
    t.add_argument("--vocab-size", type=int, help="vocabulary size incl. specials (default: the config's)")
    t.add_argument("--out", required=True, help="output folder (tokenizer.json is written there)")
    t.add_argument("--max-chars", type=int, help="characters of text to train on (default: the config's "
                   "tokenizer.train_chars)")


@runs("tokenizer")
def _tokenizer(args):
    from gptlab.tokenizer import train_tokenizer_from_config  # deferred: heavy (tokenizers)
    path = train_tokenizer_from_config(args.config, args.out, vocab_size=args.vocab_size,
                                       max_chars=args.max_chars)
    print(f"wrote {path}")


@command("demo", "train a tiny model on the shipped corpus, evaluate its checkpoints, write the report")
def _demo_args(p):
    p.add_argument("--out", default="demo_run", help="folder for the run, the store and the report")
    p.add_argument("--fresh", action="store_true", help="delete a previous demo run in --out first")


@runs("demo")
def _demo(args):
    from gptlab.commands.demo import run_demo  # deferred: heavy (torch)
    run_demo(args.out, fresh=args.fresh)


@command("ladder", ladder_args.HELP)
def _ladder_args(p):
    ladder_args.add_arguments(p, DEVICE)        # commands/ladder_args.py: the flags, then one library call


@runs("ladder")
def _ladder(args):
    return ladder_args.run(args)


# ---------------------------------------------------------------- (other commands register below)
@command("report", "write report.md and a self-contained index.html from stored results (never runs a model)")
def _report_args(p):
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a run directory (all its checkpoints), checkpoint(s), or a run name in the store")
    p.add_argument("--out", help="output folder (default: PATH/report for a run directory, else ./report)")
    p.add_argument("--db", **DB)
    p.add_argument("--claims", metavar="FILE", help="add the Statement | Verdict | Evidence table of a claims TOML "
                   "(see gptlab check)")


@runs("report")
def _report(args):
    from gptlab.report import write_report  # deferred: heavy (matplotlib)
    if not Path(args.db).is_file():
        raise GptlabError(f"{args.db}: no results store here; evaluate first: gptlab eval PATH --db {args.db}")
    first = Path(args.paths[0])
    out = args.out or (first / "report" if len(args.paths) == 1 and first.is_dir() else Path("report"))
    store = Store(args.db, readonly=True)
    try:
        paths = write_report(store, args.paths, out, claims=args.claims)
    finally:
        store.close()
    print(f"wrote {paths['markdown']} and {paths['html']}\nopen file://{paths['html'].resolve()}")


@command("watch", "follow a training run: evaluate each new checkpoint, refresh the report (Ctrl-C stops)")
def _watch_args(p):
    p.add_argument("run_dir", metavar="RUN_DIR", help="the training run directory to follow")
    p.add_argument("--db", **DB)
    p.add_argument("--out", help="report folder (default: RUN_DIR/report)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between looks (default: 10)")
    p.add_argument("--log", metavar="TRACKERS", help=LOG_HELP)


@runs("watch")
def _watch(args):
    from gptlab.commands.watch import watch  # deferred: heavy (torch)
    return watch(args.run_dir, db=args.db, out=args.out, interval=args.interval, log=args.log)


@command("eval", "evaluate checkpoints: per-domain bpb and probe samples + findings, cached in the store")
def _eval_args(p):
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="checkpoint file, checkpoint folder, or run directory (all its steps), any format")
    p.add_argument("--suite", default="default", help="probe suite: 'default' or a TOML file (see gptlab probes)")
    p.add_argument("--temperature", default="0.8", help="sampling temperature(s), comma-separated; 0 is greedy")
    p.add_argument("--max-tokens", default="80,200", help="sample lengths, comma-separated; one generation "
                   "serves all (the shorter samples are prefixes of the longest)")
    p.add_argument("--samples", type=int, default=8, help="samples per probe and temperature (default 8)")
    p.add_argument("--seed", type=int, default=0, help="job seed; sample i of a probe always gets the same text")
    p.add_argument("--top-k", type=int, help="sample only among the k most likely tokens")
    p.add_argument("--top-p", type=float, help="nucleus sampling: the smallest set with this probability")
    p.add_argument("--db", **DB)
    p.add_argument("--bpb", action="append", default=[], metavar="NAME=FILE",
                   help="score bpb on this domain instead of the defaults (.txt: one document, .jsonl: one per "
                        "line in 'text', .bin: nanoGPT/llm.c token ids); repeatable")
    p.add_argument("--no-probes", action="store_true", help="bpb only: no sampling, no diagnosis")
    p.add_argument("--no-bpb", action="store_true", help="probes only")
    p.add_argument("--no-diagnose", action="store_true", help="store samples without running the detectors")
    p.add_argument("--no-exec", action="store_true", help="diagnose without executing probe tests (findings "
                   "are stored per detector version: later runs keep these unexecuted ones)")
    p.add_argument("--unsafe-exec", action="store_true",
                   help="run probe tests without the sandbox's isolation (see gptlab/sandbox/__init__.py)")
    p.add_argument("--json", action="store_true", help='print one JSON line per (model, step, domain) bpb on stdout')
    p.add_argument("--log", metavar="TRACKERS", help=LOG_HELP)
    p.add_argument("--device", **DEVICE)
    p.add_argument("--batch-rows", type=int, help="most rows sampled at once (default 64 on CPU; on GPU what fits)")
    p.add_argument("--dtype", default="auto", help="weights' dtype: auto (bfloat16 on CUDA), float32, bfloat16")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's; 1 is fastest for tiny "
                   "models and on a busy machine)")


@runs("eval")
def _eval(args):
    if args.no_probes and args.no_bpb:
        raise GptlabError("--no-probes with --no-bpb leaves nothing to evaluate; drop one of them")
    from gptlab.commands.tracking import evaluate  # deferred: heavy (torch)
    on_bpb = (lambda row: print(json.dumps(row), flush=True)) if args.json else None
    evaluate(args.paths, db=args.db, suite=args.suite,
             temperatures=parse_numbers(args.temperature, float, "--temperature"),
             max_tokens=parse_numbers(args.max_tokens, int, "--max-tokens"), samples=args.samples, seed=args.seed,
             bpb_files=args.bpb or None, device=args.device, probes=not args.no_probes, bpb=not args.no_bpb,
             diagnose=not args.no_diagnose, execute=not args.no_exec, unsafe_exec=args.unsafe_exec, log=args.log,
             top_k=args.top_k, top_p=args.top_p, batch_rows=args.batch_rows, threads=args.threads, on_bpb=on_bpb,
             dtype=args.dtype)


COMMANDS["bench"] = [bench.HELP, lambda p: bench.add_arguments(p, DB, DEVICE), bench.run]   # commands/bench.py
COMMANDS["diagnose"] = [diagnose_file.HELP, diagnose_file.add_arguments, diagnose_file.run]   # commands/diagnose_file.py


@command("sample", "stream a completion of a prompt from each checkpoint (quick looks; nothing is stored)")
def _sample_args(p):
    p.add_argument("path", metavar="PATH", help="checkpoint file, checkpoint folder, or run directory")
    p.add_argument("prompt", help="the text to continue")
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy (default 0.8)")
    p.add_argument("--max-tokens", type=int, default=200, help="tokens to generate (default 200)")
    p.add_argument("--top-k", type=int, help="sample only among the k most likely tokens")
    p.add_argument("--top-p", type=float, help="nucleus sampling: the smallest set with this probability")
    p.add_argument("--seed", type=int, default=0, help="same seed, same text (default 0)")
    p.add_argument("--last", action="store_true", help="only the newest checkpoint of a run")
    p.add_argument("--device", **DEVICE)


@runs("sample")
def _sample(args):
    from gptlab.commands.sample import sample_paths  # deferred: heavy (torch)
    sample_paths(args.path, args.prompt, temperature=args.temperature, max_tokens=args.max_tokens, top_k=args.top_k,
                 top_p=args.top_p, seed=args.seed, device=args.device, last=args.last)


@command("probes", "list a probe suite (validates it: unknown keys and bad tests are errors)")
def _probes_args(p):
    p.add_argument("suite", nargs="?", default="default", metavar="SUITE", help="'default' or a suite TOML file")
    p.add_argument("--full", action="store_true", help="print every field of every probe")


@runs("probes")
def _probes(args):
    from gptlab.probes import describe, load_suite  # deferred: heavy (tree-sitter grammars)
    print(describe(load_suite(args.suite), full=args.full))


# the commands that read checkpoints and stored results register last: `gptlab --help` lists them after
# the ones above (cli_results.py: models, compare, check, results)
from gptlab import cli_results  # noqa: E402, F401 - imported for its @command registrations


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gptlab",
        description="Train small GPTs, evaluate every checkpoint (bits-per-byte per domain, probe "
                    "samples), diagnose named failure modes, and write a report with the numbers.",
        epilog="Start with `gptlab demo`. Each command has its own --help.")
    parser.add_argument("--version", action="version", version=f"gptlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        status = COMMANDS[args.command][2](args)
        return int(status or 0)
    except GptlabError as e:
        print("gptlab: error: " + " ".join(str(e).splitlines()), file=sys.stderr)   # one line, always
        return 2
    except KeyboardInterrupt:
        print("gptlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if os.environ.get("GPTLAB_DEBUG"):
            raise
        print(f"gptlab: error: unexpected {type(e).__name__}: {e} (set GPTLAB_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
