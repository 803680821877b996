"""The evaluation job: every checkpoint under the given paths gets per-domain bits-per-byte, samples of a
probe suite and the detectors' findings — each taken from the results store when it is already there.

    gptlab eval runs/demo --db results.sqlite                  all checkpoints of a run, oldest first
    gptlab eval ckpt.pt --bpb code=val.jsonl --no-probes --json
    torchrun --nproc_per_node=8 -m gptlab eval runs/d12         the same work split across ranks (ranks.py)
    python -m pytest tests/test_eval.py tests/test_eval_distributed.py

Per checkpoint: load it, record the model (and, for a gptlab run, its config and training log), score each
bpb domain (gptlab/evaluate/bpb_domains.py says which text), sample the suite (probe_sampling.py), then
diagnose the new samples (findings.py). Every unit — a domain's bpb, a batch of samples, a chunk of
findings — is one transaction, so a job killed at any moment resumes where it stopped, and a repeated job
loads each model but never runs it: the summary says "cache hit" and counts zero model calls.

Under torchrun (WORLD_SIZE > 1) the checked arguments and the list of checkpoints go to
gptlab/evaluate/ranks.py, which splits the job across the ranks. A job in one process first merges what an
interrupted job across ranks left in its journals (gptlab/evaluate/journal.py).
"""

from __future__ import annotations

import gc
import math
import time
from pathlib import Path

import torch

from gptlab.checkpoints import discover, load
from gptlab.checkpoints.gptlab_run import read_metrics, run_dir_of
from gptlab.devices import eval_dtype, pick_device
from gptlab.distributed import launched_world
from gptlab.engine import Engine
from gptlab.errors import GptlabError
from gptlab.evaluate import bpb_domains, journal, ranks
from gptlab.evaluate.findings import diagnose_stored
from gptlab.evaluate.job_summary import JobProgress, Summary, bpb_line
from gptlab.evaluate.probe_sampling import register_probes, sample_suite, sampling_warnings
from gptlab.probes import load_suite
from gptlab.store import Store


def _validate(temperatures, max_tokens, samples, seed, top_k, top_p, batch_rows, threads=None):
    for t in temperatures:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise GptlabError(f"--temperature {t}: must be a number >= 0 (0 is greedy)")
    if not temperatures:
        raise GptlabError("--temperature: give at least one temperature")
    if not max_tokens or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in max_tokens):
        raise GptlabError(f"--max-tokens {','.join(map(str, max_tokens))}: every length must be a whole number >= 1")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise GptlabError(f"--samples {samples}: must be at least 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GptlabError(f"--seed {seed}: must be a whole number >= 0")
    if top_k is not None and top_k < 1:
        raise GptlabError(f"--top-k {top_k}: must be at least 1")
    if top_p is not None and not 0 < top_p <= 1:
        raise GptlabError(f"--top-p {top_p}: must be in (0, 1]")
    if batch_rows is not None and batch_rows < 1:
        raise GptlabError(f"--batch-rows {batch_rows}: must be at least 1")
    if threads is not None and threads < 0:
        raise GptlabError(f"--threads {threads}: must be >= 0 (0: torch's default)")


def _plans(paths, explicit) -> tuple[dict, list]:
    """({run dir: run config}, [(checkpoint ref, run dir or None, bpb domains)]) for every checkpoint, once."""
    seen, run_configs, plans = set(), {}, []
    for p in paths:
        for ref in discover(p):
            key = str(Path(ref.path).resolve())
            if key in seen:
                continue
            seen.add(key)
            run_dir = run_dir_of(Path(ref.path)) if ref.format == "gptlab_run" else None
            if run_dir is not None and run_dir not in run_configs:
                run_configs[run_dir] = bpb_domains.read_run_config(run_dir)
            plans.append((ref, run_dir, bpb_domains.domains_for(ref, run_configs.get(run_dir, {}), explicit)))
    return run_configs, plans


def evaluate(paths: list[str], *, db: str, suite="default", temperatures=(0.8,), max_tokens=(80, 200),
             samples: int = 8, seed: int = 0, bpb_files=None, device=None, probes: bool = True,
             progress: bool = True, bpb: bool = True, diagnose: bool = True, execute: bool = True,
             unsafe_exec: bool = False, top_k: int | None = None, top_p: float | None = None,
             batch_rows: int | None = None, threads: int | None = None, on_bpb=None, echo=None,
             dtype: str | None = "auto") -> Summary:
    """Evaluate every checkpoint found under `paths` into the store at `db`; see the module docstring.
    `on_bpb(row)` receives each {"model","step","domain","bpb","bytes","tokens"} (the CLI's --json).
    `dtype`: the weights' dtype while evaluating (auto: bfloat16 on CUDA, else as loaded; gptlab.devices)."""
    t0 = time.perf_counter()
    temperatures = tuple(float(t) if isinstance(t, int) and not isinstance(t, bool) else t for t in temperatures)
    max_tokens = tuple(sorted(set(max_tokens)))
    _validate(temperatures, max_tokens, samples, seed, top_k, top_p, batch_rows, threads)   # before anything is read or loaded
    top_p = None if top_p == 1.0 else top_p            # the same sampling, so the same store key
    the_suite = load_suite(suite) if probes else None
    explicit = bpb_domains.parse_bpb_args(bpb_files) if bpb_files else None

    if threads:                 # tiny models run fastest on one thread, and a shared machine punishes more
        torch.set_num_threads(threads)
    device = pick_device(device)
    weights_dtype = eval_dtype(dtype, device)
    dist = ranks.session(device) if launched_world()[1] > 1 else None
    run_configs, plans = ranks.agreed(dist, lambda: _plans(paths, explicit))   # an error on any rank stops all
    refs = [plan[0] for plan in plans]
    if dist is not None:                         # under torchrun: the ranks share the work (ranks.py)
        rows_default = 64 if dist.device.type == "cpu" else 256
        spec = ranks.JobSpec(db=db, plans=plans, run_configs=run_configs, suite=the_suite, temperatures=temperatures,
                             lengths=max_tokens, samples=samples, seed=seed, top_k=top_k, top_p=top_p,
                             batch_rows=batch_rows or rows_default, bpb=bpb, diagnose=diagnose, execute=execute,
                             unsafe_exec=unsafe_exec, progress=progress, on_bpb=on_bpb, echo=echo,
                             dtype=weights_dtype)
        return ranks.evaluate_ranks(dist, spec, t0)
    rows = len(the_suite.probes) * len(temperatures) * samples if the_suite else 0
    units = sum((len(d) if bpb else 0) + rows + (rows * len(max_tokens) if diagnose else 0) for _, _, d in plans)

    summary = Summary(checkpoints=len(refs))
    bar = JobProgress(units, progress)
    say = echo or bar.say

    def warn(msg):
        summary.warnings.append(msg)
        say(f"warning: {msg}")

    store = Store(db)
    calls = [0]
    try:
        left, files = journal.read_leftovers(db)      # units an interrupted job across ranks left behind
        if left:
            merged = journal.merge(store, left)
            journal.remove_files(files)
            say(f"merged {len(left)} units left by an interrupted job across ranks: {len(merged.bpb)} bpb, "
                f"{merged.samples_written} samples")
        if the_suite:
            register_probes(store, the_suite)
        stored_runs = set()
        for ref, run_dir, domains in plans:
            bar.status(f"{ref.label}: loading")
            loaded = load(ref, device)
            if weights_dtype is not None:
                loaded.model.to(dtype=weights_dtype)
            info = loaded.info
            hook = loaded.model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
            store.put_model(info)
            if run_dir is not None and run_dir not in stored_runs:
                cfg = run_configs[run_dir]
                store.put_run(info.run, str(run_dir.resolve()), cfg, cfg.get("tokens_per_step"),
                              read_metrics(run_dir))
                stored_runs.add(run_dir)
            if bpb and domains:
                _score(store, loaded, domains, device, bar, summary, on_bpb, say, warn)
            if the_suite:
                _sample(store, loaded, the_suite, bar, summary, warn, temperatures=temperatures,
                        max_tokens=max_tokens, samples=samples, seed=seed, top_k=top_k, top_p=top_p,
                        batch_rows=batch_rows)
            hook.remove()
            del loaded
            gc.collect()
            if the_suite and diagnose:
                bar.status(f"{ref.label}: diagnosing")
                computed, cached = diagnose_stored(store, [info.weights_hash], execute=execute,
                                                   unsafe_exec=unsafe_exec, on_done=bar.advance)
                summary.findings_computed += computed
                summary.findings_cached += cached
    finally:
        bar.close()
        store.close()
    summary.model_calls = calls[0]
    summary.seconds = time.perf_counter() - t0
    for line in summary.lines(db):
        say(line)
    return summary


def _score(store, loaded, domains, device, bar, summary, on_bpb, say, warn):
    info = loaded.info
    bar.status(f"{info.run}@{info.step}: bpb")
    parts = []

    def on_result(domain, row, cached):
        bar.advance(1)
        if row is None:
            return
        item = {"model": info.run, "step": info.step, "domain": domain, "bpb": row["bpb"], "bytes": row["bytes"],
                "tokens": row["tokens"]}
        summary.bpb.append(item)
        parts.append(f"{domain} {row['bpb']:.4f}")
        if on_bpb is not None:
            on_bpb(item)

    computed, cached = bpb_domains.score_domains(store, loaded, domains, device=device, on_result=on_result, warn=warn)
    summary.bpb_computed += computed
    summary.bpb_cached += cached
    if parts:
        say(bpb_line(f"{info.run}@{info.step}", parts, computed, cached))


def _sample(store, loaded, suite, bar, summary, warn, **kw):
    info = loaded.info
    bar.status(f"{info.run}@{info.step}: sampling")
    engine = Engine(loaded.model, loaded.tokenizer, max_rows=kw.pop("batch_rows"))
    counts = sample_suite(store, engine, info.weights_hash, suite, on_rows=bar.advance, **kw)
    for note in engine.notes:
        warn(f"{info.run}@{info.step}: {note}")
    for msg in sampling_warnings(f"{info.run}@{info.step}", engine.context, counts, max(kw["max_tokens"]),
                                 counts.generated_rows > 0):
        warn(msg)
    if counts.skipped:
        bar.advance(len(counts.skipped) * len(kw["temperatures"]) * kw["samples"])
    summary.generations += counts.generated_rows
    summary.samples_written += counts.written
    summary.samples_cached += counts.cached
