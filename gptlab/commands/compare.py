"""`gptlab compare`: evaluate what the store lacks, then measure, rank and render the comparison page.

    gptlab compare runs/code_heavy runs/prose_heavy --db results.sqlite --out compare
    python -m pytest tests/test_compare.py

Each PATH's newest checkpoint (or PATH@STEP) is evaluated into the store (gptlab/evaluate/job.py) —
results already there are reused, so a second run only reads — on one set of bpb domains for every model
(`--bpb`, else the first gptlab run's own val domains, else the shipped corpus). Then the store is read
(gptlab/compare/measurements.py), ranked (gptlab/compare/ranking.py) and written as compare.md and
compare.html (gptlab/report/sections/compare.py). A run name in the store needs no model at all; a Hugging
Face Hub id that is neither a path here nor a run name in the store is read from the Hub cache.
Under torchrun (`torchrun --nproc_per_node=4 -m gptlab compare ...`) every rank takes part in the evaluation
and rank 0 alone compares and writes (docs/distributed.md).
"""

from __future__ import annotations

from pathlib import Path

from gptlab.checkpoints import discover, hub
from gptlab.checkpoints.gptlab_run import run_dir_of
from gptlab.compare.claims import load_claims
from gptlab.compare.claims_verdict import check
from gptlab.compare.measurements import PREFERRED_TEMPERATURE, Measurements, pick, resolve
from gptlab.compare.ranking import build
from gptlab.distributed import launched_world
from gptlab.errors import GptlabError
from gptlab.evaluate import bpb_domains
from gptlab.evaluate.job import evaluate
from gptlab.report.sections.compare import write_comparison
from gptlab.stats import bootstrap as stats
from gptlab.store import Store

def _common_domains(refs, explicit):
    """{name: files} every model is scored on: --bpb, else the first gptlab run's val domains, else the
    sample corpus shipped with gptlab."""
    if explicit:
        return {d.name: d.files for d in bpb_domains.parse_bpb_args(explicit)}
    for ref in refs:
        if ref.format == "gptlab_run":
            domains = bpb_domains.run_domains(bpb_domains.read_run_config(run_dir_of(Path(ref.path))))
            if domains:
                return {d.name: d.files for d in domains}
    return {d.name: d.files for d in bpb_domains.corpus_domains()}


def _newest_ref(target: str, db: str):
    """The CheckpointRef a PATH or PATH@STEP names on disk (or a Hugging Face Hub id names in the Hub cache),
    or None when it is neither: a run name in the store."""
    path, step = target, None
    head, sep, tail = target.rpartition("@")
    if not Path(target).exists() and sep and tail.isdigit():
        path, step = head, int(tail)
    if not Path(path).exists() and (not hub.is_hub_id(path) or _stored_run(db, path)):
        return None
    refs = discover(path)
    if step is not None:
        refs = [r for r in refs if r.step == step]
        if not refs:
            raise GptlabError(f"{target}: no checkpoint at step {step} under {path}")
    return refs[-1]


def _stored_run(db: str, name: str) -> bool:
    if not Path(db).is_file():
        return False
    store = Store(db, readonly=True)
    try:
        return any(m["run"] == name for m in store.models())
    finally:
        store.close()


def _stored_row(store, ref) -> dict:
    want = str(Path(ref.path).resolve())
    rows = [m for m in store.models() if m["path"] and str(Path(m["path"]).resolve()) == want]
    if not rows:
        raise GptlabError(f"{ref.path}: not in {store.path} after evaluation")
    return max(rows, key=lambda m: m["updated_at"] or 0)


def compare_paths(targets: list[str], *, db: str, out: str | None = None, suite: str = "default",
                  claims: str | None = None, evaluate_missing: bool = True, bpb_files=None,
                  temperature: float | None = None, resamples: int = stats.RESAMPLES, **eval_kw) -> dict | None:
    """Evaluate what is missing (eval_kw go to gptlab.evaluate.job.evaluate), measure, render; returns
    {"comparison", "claims", "markdown", "html"}. Intervals use bootstrap seed 0, so they never change.
    Under torchrun every rank evaluates its share; only rank 0 goes on to compare (the others get None)."""
    if len(targets) < 1:
        raise GptlabError("compare: give at least one PATH")
    claims_file = load_claims(claims) if claims else None        # a bad file fails before any model runs
    refs = {t: _newest_ref(t, db) for t in targets}
    on_disk = [r for r in refs.values() if r is not None]
    if evaluate_missing and on_disk:
        temps = (temperature,) if temperature is not None else (PREFERRED_TEMPERATURE,)
        evaluate([r.extra.get("hub_id", str(r.path)) for r in on_disk], db=db, suite=suite,
                 bpb_files=_common_domains(on_disk, bpb_files), temperatures=temps, **eval_kw)
    elif not Path(db).is_file():
        raise GptlabError(f"{db}: no results store here")
    if launched_world()[0] != 0:
        return None                 # another rank under torchrun: it helped evaluate; rank 0 compares
    store = Store(db, readonly=True)
    try:
        rows = [_stored_row(store, refs[t]) if refs[t] is not None and evaluate_missing else None for t in targets]
        rows = [r if r is not None else pick(store, t) for t, r in zip(targets, rows)]
        models = resolve(store, targets, rows)
        meas = Measurements(store, models, suite=suite, temperature=temperature)
        comparison = build(meas, resamples=resamples)
        verdicts = check(claims_file, store, resamples=resamples) if claims_file else None
        written = write_comparison(comparison, verdicts, out or "compare", store_path=str(store.path),
                                   claims_title=claims_file.title if claims_file else "")
    finally:
        store.close()
    return {"comparison": comparison, "claims": verdicts, **written}
