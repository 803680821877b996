"""`gptlab ladder`: its arguments and its one library call (the ladder itself is gptlab/commands/ladder.py).

    gptlab ladder ladder-demo --out runs/ladder
    gptlab ladder d12 --out runs/w --axis model.n_embd --values 64,128,192,256 --set model.depth=2
    python -m pytest tests/test_ladder.py

Registered in gptlab/cli.py's command table by `@command("ladder", HELP)`; light to import (no torch), so that
`gptlab --help` stays instant.
"""

from __future__ import annotations

from gptlab.errors import GptlabError

HELP = "train one recipe at several sizes (a [ladder] of depths, widths ...), evaluate each, report"
DESCRIPTION = ("Train the config's recipe once per value of one key (its [ladder] table, or the flags below), each "
               "for the tokens its budget gives it, into OUT/<name>-<key><value>; evaluate every checkpoint into the "
               "store (bpb per domain; probes and diagnosis on each rung's final checkpoint); record the rungs and "
               "write OUT/report. Run it again to resume: finished rungs are reused, a rung stopped midway goes on "
               "from its last checkpoint. Guide: docs/ladder.md")


def add_arguments(p, device_flag: dict) -> None:
    p.description = DESCRIPTION
    p.add_argument("config", help="training config TOML or preset (ladder-demo: 4 depths on CPU in minutes)")
    p.add_argument("--out", required=True, help="folder for the rungs' run directories, the store and the report")
    p.add_argument("--db", help="results store (default: OUT/results.sqlite)")
    p.add_argument("--axis", help="the key varied, table.key (default: the config's ladder.axis, model.depth)")
    p.add_argument("--values", help="the rungs' values, comma-separated and ascending, at least 3 (e.g. 2,4,6,8)")
    p.add_argument("--tokens-per-param", metavar="R", help="budget: training tokens per non-embedding parameter "
                   "(default: the config's, else 20, Chinchilla's ratio)")
    p.add_argument("--flops", metavar="F", help="budget: training FLOPs per rung (e.g. 1e15) instead of tokens per "
                   "parameter")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.depth=2 (repeatable; the flags above win)")
    p.add_argument("--no-eval", action="store_true", help="train and record the rungs only: no evaluation, no report")
    p.add_argument("--suite", default="default", help="probe suite: 'default' or a TOML file")
    p.add_argument("--temperature", default="0.8", help="sampling temperature(s), comma-separated (default 0.8)")
    p.add_argument("--max-tokens", default="40,120", help="sample lengths, comma-separated (default 40,120)")
    p.add_argument("--samples", default="4", help="samples per probe and temperature (default 4)")
    p.add_argument("--seed", default="0", help="sampling seed (default 0)")
    p.add_argument("--probes-on", default="final", metavar="final|all", help="sample and diagnose each rung's "
                   "final checkpoint (default) or every checkpoint; bpb is scored on every checkpoint either way")
    p.add_argument("--no-probes", action="store_true", help="bpb only: no sampling, no diagnosis")
    p.add_argument("--no-exec", action="store_true", help="diagnose without executing the probes' tests")
    p.add_argument("--threads", default="1", help="CPU threads for the evaluation (default 1: fastest for tiny "
                   "models and on a busy machine)")
    p.add_argument("--tasks", help="also score each rung's final checkpoint on these lm-evaluation-harness tasks "
                   "(comma-separated, as gptlab bench; needs the extra [bench]); the report shows them per rung")
    p.add_argument("--num-fewshot", type=int, help="with --tasks: examples per prompt (default: each task's own)")
    p.add_argument("--limit", help="with --tasks: documents per task (a number, or a fraction below 1)")
    p.add_argument("--include-path", metavar="DIR", help="with --tasks: a folder of task YAMLs of your own")
    p.add_argument("--device", **device_flag)


def numbers(text: str, kind, flag: str) -> tuple:
    """'2,4,6' -> (2, 4, 6) (floats that are whole become ints); a one-line error naming the flag otherwise."""
    try:
        got = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        got = ()
    if not got or (kind is int and not all(v.is_integer() for v in got)):
        raise GptlabError(f"{flag} {text!r}: expected comma-separated {'integers' if kind is int else 'numbers'}")
    return tuple(int(v) if v.is_integer() else v for v in got)


def one(text: str | None, kind, flag: str):
    if text is None:
        return None
    got = numbers(text, kind, flag)
    if len(got) != 1:
        raise GptlabError(f"{flag} {text!r}: expected one number")
    return got[0]


def check_options(o: dict) -> None:
    """The evaluation flags, before any rung trains: a bad one must not wait for the end of the training."""
    if o["samples"] < 1:
        raise GptlabError(f"--samples {o['samples']}: must be at least 1")
    if o["seed"] < 0 or o["threads"] < 0:
        raise GptlabError(f"--seed {o['seed']} / --threads {o['threads']}: must be whole numbers >= 0")
    if any(t < 0 for t in o["temperatures"]) or any(n < 1 for n in o["max_tokens"]):
        raise GptlabError("--temperature must be >= 0 and --max-tokens >= 1")


def run(args) -> int:
    from gptlab.commands.ladder import run_ladder  # deferred: heavy (torch)
    from gptlab.probes import load_suite  # deferred: heavy (tree-sitter grammars)
    values = numbers(args.values, float, "--values") if args.values is not None else None
    options = dict(suite=args.suite, temperatures=numbers(args.temperature, float, "--temperature"),
                   max_tokens=numbers(args.max_tokens, int, "--max-tokens"),
                   samples=one(args.samples, int, "--samples"), seed=one(args.seed, int, "--seed"),
                   probes=not args.no_probes, execute=not args.no_exec, threads=one(args.threads, int, "--threads"))
    check_options(options)
    if options["probes"] and not args.no_eval:
        load_suite(args.suite)          # a bad suite: one line now, not after the training
    bench = None
    if args.tasks is not None and not args.no_eval:
        from gptlab.evaluate.benchmarks import check_limit, parse_tasks, require_lm_eval  # deferred: heavy (torch)
        require_lm_eval()               # a missing extra or a bad flag: one line now, not after the training
        bench = dict(tasks=",".join(parse_tasks(args.tasks)), num_fewshot=args.num_fewshot,
                     limit=check_limit(args.limit), include_path=args.include_path)
    run_ladder(args.config, args.out, db=args.db, overrides=args.set, axis=args.axis, values=values,
               tokens_per_param=one(args.tokens_per_param, float, "--tokens-per-param"),
               flops=one(args.flops, float, "--flops"), run_eval=not args.no_eval, device=args.device,
               eval_options=options, probes_on=args.probes_on, bench=bench)
    return 0
