"""The evaluation job across the ranks of torchrun: the same results as one process, in less time.

    torchrun --nproc_per_node=8 -m gptlab eval runs/d12 --db results.sqlite       (NCCL on GPUs, gloo on CPU)
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 -m gptlab eval ...
    python -m pytest tests/test_eval_distributed.py

`gptlab eval` (and `compare` and `watch`, which call it) runs this when torchrun set WORLD_SIZE > 1:

1. Leftovers: journals of an interrupted job on this store are merged first (gptlab/evaluate/journal.py).
2. Look: checkpoint i is loaded by rank i % world, which reports its model info (the store's key) and how
   each probe prompt fits its context. Rank 0 records the models and runs, finds what the store lacks, and
   plans: bpb domains (striped when large) and sample batches, balanced by cost (gptlab/evaluate/balance.py).
   The batches are the ones one process forms (`plan_batches` over the whole suite), so each sample is
   generated in the same batch as alone: the same text, bit for bit, on the same device.
3. Work: each rank evaluates its units, writing each to its journal as it finishes it.
4. Merge: the ranks send their records to rank 0, which writes them into the store in one transaction (the
   store is opened by rank 0 only), prints the bpb lines, then diagnoses the new samples alone (the detectors
   and the sandbox use every core of its machine).

A rank killed at any moment leaves whole units in its journal; torchrun then stops the others, and the next
job (any number of ranks) merges those units and computes only what is missing. Only rank 0 prints.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gptlab.checkpoints import load
from gptlab.checkpoints.gptlab_run import read_metrics
from gptlab.data import source_hash
from gptlab.distributed import Dist
from gptlab.engine import Engine, plan_batches
from gptlab.errors import GptlabError
from gptlab.evaluate import balance, journal
from gptlab.evaluate.bpb import PROTOCOL_VERSION, score_documents
from gptlab.evaluate.bpb_domains import text_documents, token_documents
from gptlab.evaluate.findings import diagnose_stored
from gptlab.evaluate.job_summary import JobProgress, Summary, bpb_line
from gptlab.evaluate.probe_sampling import (SampleCounts, generate_records, missing_rows, plan_rows,
                                            register_probes, sampling_warnings)
from gptlab.store import Store

BYTES_PER_TOKEN = 4         # cost estimate of a text file before it is tokenized
LOAD_TOKENS = {"cuda": 1_000_000, "cpu": 4_096}     # loading a model costs about this many tokens' compute
_SESSION: list[Dist] = []   # the process's ranks, joined once (watch evaluates again and again)


@dataclass
class JobSpec:
    """What gptlab.evaluate.job.evaluate hands over: the checkpoints and what to compute for each."""
    db: str
    plans: list                 # [(CheckpointRef, run dir or None, [Domain])]
    run_configs: dict
    suite: object               # gptlab.probes.Suite, or None: no sampling
    temperatures: tuple
    lengths: tuple
    samples: int
    seed: int
    top_k: int | None
    top_p: float | None
    batch_rows: int
    bpb: bool
    diagnose: bool
    execute: bool
    unsafe_exec: bool
    progress: bool
    on_bpb: Callable | None
    echo: Callable | None
    dtype: object = None        # the weights' dtype while evaluating (gptlab.devices.eval_dtype), None: as loaded


def _load(spec: JobSpec, ref, device):
    loaded = load(ref, device)
    if spec.dtype is not None:
        loaded.model.to(dtype=spec.dtype)
    return loaded


def session(device=None) -> Dist:
    """This process's rank in torchrun's world (the process group is made on the first call)."""
    if not _SESSION:
        _SESSION.append(Dist.from_env(device))
        atexit.register(_SESSION[0].close)
    return _SESSION[0]


def agreed(dist: Dist | None, prepare: Callable):
    """`prepare()` on every rank; a GptlabError on any rank is raised on all of them (the lowest rank's), so
    that no rank goes on into collectives the others never reach (`watch` goes on after an error)."""
    if dist is None:
        return prepare()
    try:
        result, error = prepare(), None
    except GptlabError as e:
        result, error = None, str(e)
    first = next((e for e in dist.all_gather_objects(error) if e), None)
    if first:
        raise GptlabError(first)
    return result


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def evaluate_ranks(dist: Dist, spec: JobSpec, t0: float) -> Summary:
    """Run the job on this rank (see the module docstring). Rank 0 returns the job's summary, the others
    their own share of it."""
    lead = dist.rank == 0
    summary = Summary(checkpoints=len(spec.plans))
    say = (spec.echo or _say) if lead else (lambda msg: None)
    store = mine = held = None
    bar = JobProgress(0, False)
    try:
        launch = dist.broadcast_object(f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}" if lead else None)
        store = agreed(dist, lambda: Store(spec.db) if lead else None)
        _merge_leftovers(dist, store, spec.db, say)
        looks, held = _look(dist, spec)
        got = dist.gather_objects((looks, held[0][0] if held else None))
        plan = _plan_or_error(store, spec, dist, got, summary) if lead else None
        plan = dist.broadcast_object(plan)
        if plan["error"]:
            if lead:
                raise GptlabError(plan["error"])
            return summary
        for msg in plan["warnings"]:
            _warn(summary, say, msg)
        if lead and any(plan["units"]):
            say(_describe(plan["units"]))
        bar = JobProgress(sum(_size(u, plan) for u in plan["units"][dist.rank]), spec.progress and lead)
        mine = journal.Journal(spec.db, launch, dist.rank)
        calls, warnings, failed = _work(dist, spec, plan, held, mine, bar)
        bar.close()
        got = dist.gather_objects({"records": mine.records, "calls": calls, "warnings": warnings, "error": failed})
        if lead:
            _merge_results(store, spec, plan, got, summary, say)
            failed = next((part["error"] for part in got if part["error"]), None)
        failed = dist.broadcast_object(failed)       # merged: the journals can go
        mine.remove()
        if failed:                                   # what was done is stored; the job still failed
            if lead:
                raise GptlabError(failed)
            return summary
        if lead and spec.suite and spec.diagnose:
            hashes = [info.weights_hash for info in plan["infos"]]
            total = store.query(f"SELECT COUNT(*) AS n FROM samples WHERE weights_hash IN "
                                f"({','.join('?' * len(hashes))})", tuple(hashes))[0]["n"]
            bar = JobProgress(total, spec.progress)
            bar.status("diagnosing")
            computed, cached = diagnose_stored(store, hashes, execute=spec.execute, unsafe_exec=spec.unsafe_exec,
                                               on_done=bar.advance)
            summary.findings_computed, summary.findings_cached = computed, cached
    finally:
        bar.close()
        if mine is not None:
            mine.close()
        if store is not None:
            store.close()
    summary.seconds = time.perf_counter() - t0
    for line in summary.lines(spec.db) if lead else []:
        say(line)
    return summary


def _warn(summary: Summary, say, msg: str) -> None:
    summary.warnings.append(msg)
    say(f"warning: {msg}")


def _merge_leftovers(dist: Dist, store, db, say) -> None:
    """Every machine's first rank reads what interrupted jobs left on its disk; rank 0 merges it all."""
    records, files = journal.read_leftovers(db) if dist.local_rank == 0 else ([], [])
    got = dist.gather_objects(records)
    if store is not None:
        records = [r for part in got for r in part]
        if records:
            merged = journal.merge(store, records)
            say(f"merged {len(records)} units left by an interrupted job: {len(merged.bpb)} bpb, "
                f"{merged.samples_written} samples ({merged.stripes_dropped} bpb stripes of unfinished domains "
                f"dropped)")
    dist.broadcast_object(None)                      # merged: the files can go
    journal.remove_files(files)


def _look(dist: Dist, spec: JobSpec):
    """This rank's checkpoints (i % world == rank): [{index, info, fits, context} or {index, error}], and
    [(index, LoadedModel)] of the last one, kept for the work if it is planned here ([] when none)."""
    looks, held = [], []
    max_new = spec.lengths[-1]
    for i in range(dist.rank, len(spec.plans), dist.world):
        held.clear()
        loaded = engine = None
        gc.collect()
        try:
            loaded = _load(spec, spec.plans[i][0], dist.device)
        except GptlabError as e:
            looks.append({"index": i, "error": str(e)})
            continue
        fits = {}
        engine = Engine(loaded.model, loaded.tokenizer, max_rows=spec.batch_rows)
        for p in spec.suite.probes if spec.suite else ():
            try:
                fits[p.prompt] = engine.fit(p.prompt, max_new)
            except GptlabError:
                fits[p.prompt] = None
        looks.append({"index": i, "info": loaded.info, "fits": fits, "context": engine.context})
        held.append((i, loaded))
    return looks, held


def _fit_from(fits: dict):
    def fit(prompt: str, max_new: int):
        if fits.get(prompt) is None:
            raise GptlabError("the tokenizer cannot encode this prompt")
        return fits[prompt]
    return fit


def _plan_or_error(store, spec: JobSpec, dist: Dist, got, summary: Summary) -> dict:
    try:
        return _plan(store, spec, dist, got, summary)
    except GptlabError as e:
        return {"error": str(e)}


def _plan(store, spec: JobSpec, dist: Dist, got, summary: Summary) -> dict:
    """Rank 0: record the models, find what the store lacks, split it into units and assign them."""
    looks = sorted((look for part, _ in got for look in part), key=lambda x: x["index"])
    for look in looks:
        if "error" in look:
            raise GptlabError(look["error"])
    held = {r: h for r, (_, h) in enumerate(got) if h is not None}
    infos = [look["info"] for look in looks]
    if spec.suite:
        register_probes(store, spec.suite)
    stored_runs, warnings = set(), []
    units, load_cost, todo, data_hash = [], {}, {}, {}
    per_token = LOAD_TOKENS.get(dist.device.type, LOAD_TOKENS["cpu"])
    for c, ((ref, run_dir, domains), look, info) in enumerate(zip(spec.plans, looks, infos)):
        store.put_model(info)
        if run_dir is not None and run_dir not in stored_runs:
            cfg = spec.run_configs[run_dir]
            store.put_run(info.run, str(run_dir.resolve()), cfg, cfg.get("tokens_per_step"), read_metrics(run_dir))
            stored_runs.add(run_dir)
        load_cost[c] = float(info.params) * per_token
        for d, dom in enumerate(domains if spec.bpb else ()):
            missing = [f for f in dom.files if not Path(f).is_file()]
            if missing:
                warnings.append(f"bpb domain {dom.name}: {missing[0]} not found; skipped (pass --bpb {dom.name}=FILE)")
                continue
            data_hash[c, d] = source_hash(dom.files)
            if store.get_bpb(info.weights_hash, dom.name, data_hash[c, d], PROTOCOL_VERSION) is not None:
                summary.bpb_cached += 1
            else:
                tokens = sum(os.path.getsize(f) for f in dom.files) / BYTES_PER_TOKEN
                units.append(balance.Unit(c, "bpb", d, tokens * info.params))
        if spec.suite:
            counts = SampleCounts()
            rows, encoded = plan_rows(spec.suite, _fit_from(look["fits"]), temperatures=spec.temperatures,
                                      samples=spec.samples, max_new=spec.lengths[-1], counts=counts)
            missing, cached = missing_rows(store, info.weights_hash, rows, spec.lengths,
                                           temperatures=spec.temperatures, top_k=spec.top_k, top_p=spec.top_p,
                                           seed=spec.seed)
            summary.samples_cached += cached
            for b, batch in enumerate(plan_batches([len(e[0]) for e in encoded], spec.lengths[-1], spec.batch_rows)):
                todo[c, b] = [j for j in batch if j in missing]
                if todo[c, b]:
                    tokens = sum(len(encoded[j][0]) + encoded[j][1] for j in todo[c, b])
                    units.append(balance.Unit(c, "samples", b, tokens * info.params))
            warnings += sampling_warnings(f"{info.run}@{info.step}", look["context"], counts, spec.lengths[-1],
                                          bool(missing))
    needed = {u.checkpoint for u in units}
    load_cost = {c: v for c, v in load_cost.items() if c in needed}
    assigned = balance.assign(balance.stripe(units, dist.world, load_cost), dist.world, load_cost, held)
    return {"error": None, "units": assigned, "todo": todo, "data_hash": data_hash, "infos": infos,
            "warnings": warnings}


def _size(u: balance.Unit, plan: dict) -> int:
    return len(plan["todo"][u.checkpoint, u.item]) if u.kind == "samples" else 1


def _describe(units: list[list[balance.Unit]]) -> str:
    def n(count: int, one: str, many: str) -> str:
        return f"{count} {one if count == 1 else many}"

    def one(r, us):
        bpb = {(u.checkpoint, u.item) for u in us if u.kind == "bpb"}
        stripes = sum(u.stripes > 1 for u in us)
        parts = [n(len({u.checkpoint for u in us}), "checkpoint", "checkpoints"),
                 n(len(bpb), "bpb domain", "bpb domains") + (f" ({n(stripes, 'stripe', 'stripes')})" if stripes else ""),
                 n(sum(u.kind == "samples" for u in us), "sample batch", "sample batches")]
        return f"rank {r}: " + ", ".join(parts)
    return f"{len(units)} ranks: " + "; ".join(one(r, us) for r, us in enumerate(units))


def _work(dist: Dist, spec: JobSpec, plan: dict, held: list, mine: journal.Journal, bar: JobProgress):
    """Evaluate this rank's units, one journal line each; returns (model calls, warnings, error). A
    GptlabError (a token file the tokenizer cannot decode) stops this rank's work and is returned, so that all
    ranks still meet to merge. `held`: [(index, LoadedModel)] from the look, emptied here so that the model
    goes when it is done with."""
    calls = [0]
    try:
        warnings = _work_units(dist, spec, plan, held, mine, bar, calls)
    except GptlabError as e:
        return calls[0], [], str(e)
    return calls[0], warnings, None


def _work_units(dist, spec, plan, held, mine, bar, calls) -> list[str]:
    units = plan["units"][dist.rank]
    warnings = []
    by_checkpoint: dict[int, list[balance.Unit]] = {}
    for u in units:
        by_checkpoint.setdefault(u.checkpoint, []).append(u)
    kept = held.pop() if held else None
    if kept is not None and kept[0] not in by_checkpoint:
        kept = None
        gc.collect()
    for c, todo in by_checkpoint.items():
        ref, _, domains = spec.plans[c]
        info = plan["infos"][c]
        bar.status(f"{ref.label}: loading")
        loaded = kept[1] if kept is not None and kept[0] == c else _load(spec, ref, dist.device)
        kept = None
        hook = loaded.model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        stripes: dict[int, list[balance.Unit]] = {}
        for u in todo:
            if u.kind == "bpb":
                stripes.setdefault(u.item, []).append(u)
        for d, us in stripes.items():
            bar.status(f"{ref.label}: bpb {domains[d].name}")
            part = None if us[0].stripes == 1 else ({u.stripe for u in us}, us[0].stripes)
            docs = token_documents(domains[d], loaded.tokenizer)     # a .bin it cannot decode: exit 2
            try:
                result = score_documents(loaded.model, loaded.tokenizer, text_documents(domains[d], docs),
                                         device=dist.device, stripes=part)
            except GptlabError as e:
                warnings.append(f"bpb domain {domains[d].name} of {info.run}@{info.step}: {e}; skipped")
            else:
                mine.write(journal.bpb_record(mine.launch, info.weights_hash, domains[d].name,
                                              plan["data_hash"][c, d], PROTOCOL_VERSION, result, part))
            bar.advance(len(us))
        batches, engine = [u for u in todo if u.kind == "samples"], None
        if batches:
            bar.status(f"{ref.label}: sampling")
            engine = Engine(loaded.model, loaded.tokenizer, max_rows=spec.batch_rows)
            rows, encoded = plan_rows(spec.suite, engine.fit, temperatures=spec.temperatures, samples=spec.samples,
                                      max_new=spec.lengths[-1], counts=SampleCounts())
            for u in batches:
                rows_todo = plan["todo"][c, u.item]
                records = generate_records(engine, info.weights_hash, rows, encoded, rows_todo, spec.lengths,
                                           seed=spec.seed, top_k=spec.top_k, top_p=spec.top_p)
                mine.write(journal.samples_record(records, len(rows_todo)))
                bar.advance(len(rows_todo))
        hook.remove()
        loaded = engine = None
        gc.collect()
    return warnings


def _merge_results(store, spec: JobSpec, plan: dict, got: list[dict], summary: Summary, say) -> None:
    """Rank 0: the ranks' records into the store in one transaction, then the bpb lines in checkpoint order."""
    merged = journal.merge(store, [r for part in got for r in part["records"]])
    summary.model_calls = sum(part["calls"] for part in got)
    summary.generations += merged.generations
    summary.samples_written += merged.samples_written
    summary.bpb_computed += len(merged.bpb)
    for msg in dict.fromkeys([w for part in got for w in part["warnings"]] + merged.warnings):
        _warn(summary, say, msg)
    new = {(m["weights_hash"], m["domain"]) for m, _ in merged.bpb}
    for c, (ref, _, domains) in enumerate(spec.plans):
        info, parts, computed, cached = plan["infos"][c], [], 0, 0
        for d, dom in enumerate(domains):
            if (c, d) not in plan["data_hash"]:
                continue
            row = store.get_bpb(info.weights_hash, dom.name, plan["data_hash"][c, d], PROTOCOL_VERSION)
            if row is None:
                continue
            was_new = (info.weights_hash, dom.name) in new
            computed, cached = computed + was_new, cached + (not was_new)
            item = {"model": info.run, "step": info.step, "domain": dom.name, "bpb": row["bpb"],
                    "bytes": row["bytes"], "tokens": row["tokens"]}
            summary.bpb.append(item)
            parts.append(f"{dom.name} {row['bpb']:.4f}")
            if spec.on_bpb is not None:
                spec.on_bpb(item)
        if parts:
            say(bpb_line(f"{info.run}@{info.step}", parts, computed, cached))
