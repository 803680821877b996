"""`gptlab ladder`: the same recipe trained at several sizes, each evaluated, recorded as a ladder, reported.

    gptlab ladder ladder-demo --out runs/ladder                   # 4 sizes on CPU: docs/ladder.md
    gptlab ladder d12 --out runs/w --axis model.n_embd --values 64,128,192,256 --set model.depth=2
    torchrun --nproc_per_node=8 -m gptlab ladder d12 --out runs/ladder
    python -m pytest tests/test_ladder.py

1. plan (gptlab/commands/ladder_plan.py): one rung per [ladder] value, each a run directory
   OUT/<ladder name>-<axis key><value> with its own steps from the budget;
2. train each rung in turn with gptlab.train.train: a rung whose final checkpoint exists is reused, one with
   some checkpoints is resumed, so a ladder stopped at any moment (Ctrl-C, SIGKILL) goes on where it stopped
   when run again;
3. record each rung in the store (Store.put_ladder_rung: axis value, parameters, tokens, FLOPs, budget);
4. evaluate every rung into the store (gptlab.evaluate.job.evaluate): bpb per domain of every checkpoint, probe
   samples and their diagnosis on each rung's final checkpoint (or on every checkpoint: --probes-on all), with
   `gptlab demo`'s settings but 4 samples per probe unless flags say otherwise (LADDER_EVAL); a result already
   stored is reused; with --tasks, also lm-evaluation-harness scores of each rung's final checkpoint
   (gptlab.evaluate.benchmarks.run_benchmarks, rank 0). Then write the report of all rungs (OUT/report).

Under torchrun every rank trains each rung (DDP, as `gptlab train`), then every rank takes part in the
evaluation (gptlab/evaluate/ranks.py); rank 0 alone writes the store's ladder rows and the report. The ranks
join one process group first (ranks.session) and every rung's training uses it (a Dist that did not make the
group leaves it open), so that a second rung does not have to rendezvous again.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from gptlab.checkpoints.gptlab_run import list_step_dirs
from gptlab.commands.demo import DEMO_EVAL
from gptlab.commands.ladder_plan import Rung, budget_of, format_value, plan_ladder
from gptlab.config import load_config
from gptlab.distributed import launched_world
from gptlab.errors import GptlabError
from gptlab.evaluate import ranks
from gptlab.evaluate.benchmarks import run_benchmarks
from gptlab.evaluate.job import evaluate
from gptlab.report import write_report
from gptlab.store import Store
from gptlab.train import train


# gptlab demo's evaluation settings, with more samples per probe: probes run on each rung's final checkpoint only
# (`probes_on="final"`), where the failure rates by size are read, so 4 samples cost less than the demo's 2 on
# every checkpoint and give 84 per rung at two lengths.
LADDER_EVAL = dict(DEMO_EVAL, samples=4)
PROBES_ON = ("final", "all")


def say(msg: str) -> None:
    if launched_world()[0] == 0:
        print(msg, file=sys.stderr, flush=True)


def flag_overrides(axis=None, values=None, tokens_per_param=None, flops=None) -> list[str]:
    """The command's flags as `--set` items on [ladder], applied after the user's --set (flags win). A budget
    flag replaces the table's budget; both budget flags at once are an error."""
    if tokens_per_param is not None and flops is not None:
        raise GptlabError("--tokens-per-param and --flops are two budgets; give one")
    out = []
    if axis is not None:
        out.append(f"ladder.axis={json.dumps(axis)}")
    if values is not None:
        out.append(f"ladder.values={json.dumps(list(values))}")
    if tokens_per_param is not None:
        out += [f"ladder.tokens_per_param={json.dumps(tokens_per_param)}", "ladder.flops=0"]
    if flops is not None:
        out += [f"ladder.flops={json.dumps(flops)}", "ladder.tokens_per_param=0"]
    return out


def human(n: float) -> str:
    """1234567 -> '1.2M'."""
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def train_rung(rung: Rung, i: int, n: int, device=None) -> None:
    """Train one rung, or reuse it (its final checkpoint exists), or resume it (some checkpoints exist)."""
    done = list_step_dirs(rung.run_dir / "checkpoints")
    what = (f"{rung.name} ({human(rung.params)} params, {human(rung.tokens)} tokens, {rung.steps:,} steps)")
    if done and done[-1].name == f"step_{rung.steps:06d}":
        say(f"[rung {i}/{n}] reusing {what}: its final checkpoint exists")
        return
    t0 = time.time()
    say(f"[rung {i}/{n}] {'resuming' if done else 'training'} {what} ...")
    train(rung.config, rung.run_dir, resume=bool(done), device=device)
    say(f"      {time.time() - t0:.0f} s")


def record(db: str, rungs: list[Rung]) -> None:
    """Each rung's row in the store's ladder_rungs (rank 0 only)."""
    store = Store(db)
    try:
        for rung in rungs:
            store.put_ladder_rung(rung.row())
    finally:
        store.close()


def evaluate_rungs(rungs: list[Rung], db: str, device, probes_on: str, options: dict) -> None:
    """bpb of every checkpoint; probes and diagnosis of each rung's final checkpoint, or of every one."""
    run_dirs = [str(r.run_dir) for r in rungs]
    probes = options.pop("probes", True)
    if probes_on == "all" or not probes:
        say(f"[eval] every checkpoint of {len(rungs)} rungs (bpb per domain{', probes, diagnosis' * probes}) into "
            f"{db} ...")
        evaluate(run_dirs, db=db, device=device, probes=probes, **options)
        return
    say(f"[eval] bpb per domain of every checkpoint of {len(rungs)} rungs into {db} ...")
    evaluate(run_dirs, db=db, device=device, probes=False, **options)
    say(f"[eval] probes and diagnosis of each rung's final checkpoint ({options['samples']} samples per probe) ...")
    finals = [str(r.final_dir) for r in rungs]
    evaluate(finals, db=db, device=device, probes=True, **options)


def run_ladder(config: str, out: str | Path, *, db: str | None = None, overrides=(), axis=None, values=None,
               tokens_per_param=None, flops=None, run_eval: bool = True, device=None, eval_options=None,
               probes_on: str = "final", bench: dict | None = None) -> dict | None:
    """Plan, train, evaluate, record and report a ladder (module docstring). `eval_options`: keyword arguments of
    gptlab.evaluate.job.evaluate over LADDER_EVAL; `probes_on`: "final" (each rung's final checkpoint is sampled
    and diagnosed, every checkpoint gets bpb) or "all"; `bench`: run_benchmarks' tasks and options for each
    rung's final checkpoint (None: no benchmark). Returns {"rungs", "db", "report"} on rank 0 (report None
    with run_eval=False), None on the other ranks under torchrun."""
    if probes_on not in PROBES_ON:
        raise GptlabError(f"--probes-on {probes_on!r}: expected final or all")
    out = Path(out)
    db = str(db or out / "results.sqlite")
    cfg = load_config(config, list(overrides) + flag_overrides(axis, values, tokens_per_param, flops))
    rungs = plan_ladder(cfg, out)
    t0 = time.time()
    lc = cfg.ladder
    say(f"ladder {cfg.name}: {len(rungs)} rungs on {lc.axis} = {', '.join(format_value(r.value) for r in rungs)}; "
        f"budget {', '.join(f'{k} {v:g}' for k, v in budget_of(cfg).items())}; into {out}")
    if launched_world()[1] > 1:
        ranks.session(device)           # one process group for every rung's training and the evaluation
    for i, rung in enumerate(rungs, 1):
        train_rung(rung, i, len(rungs), device)
    if launched_world()[0] == 0:        # recorded once trained: an evaluation stopped midway keeps the ladder
        record(db, rungs)
    report = None
    if run_eval:
        t1 = time.time()
        evaluate_rungs(rungs, db, device, probes_on, dict(LADDER_EVAL, **(eval_options or {})))
        say(f"      {time.time() - t1:.0f} s")
    if launched_world()[0] != 0:
        return None                     # another rank under torchrun: it trained and evaluated; rank 0 reports
    if run_eval and bench:
        say(f"[bench] {bench['tasks']} on each rung's final checkpoint ...")
        run_benchmarks([str(r.final_dir) for r in rungs], bench["tasks"], db=db, num_fewshot=bench["num_fewshot"],
                       limit=bench["limit"], include_path=bench["include_path"], device=device,
                       echo=lambda line: say(f"      {line}"))
    if run_eval:
        t2 = time.time()
        say("[report] writing the report ...")
        store = Store(db)
        try:
            report = write_report(store, [cfg.name], out / "report")["html"]      # the ladder, by its name
        finally:
            store.close()
        say(f"      {time.time() - t2:.0f} s (total {time.time() - t0:.0f} s)")
    if report is None:
        print(f"trained {len(rungs)} rungs under {out}; recorded in {db} (not evaluated: --no-eval)")
    else:
        if not report.exists():
            raise GptlabError(f"{report}: the report was not written")
        print(f"report: {report.resolve()}")
        print(f"        {(report.parent / 'report.md').resolve()}")
    return {"rungs": rungs, "db": db, "report": report}
