"""The evaluation job: every checkpoint under the given paths gets per-domain bits-per-byte, samples of a
probe suite and the detectors' findings — each taken from the results store when it is already there.

    gptlab eval runs/demo --db results.sqlite                  all checkpoints of a run, oldest first
    gptlab eval ckpt.pt --bpb code=val.jsonl --no-probes --json
    python -m pytest tests/test_eval.py

Per checkpoint: load it, record the model (and, for a gptlab run, its config and training log), score each
bpb domain (gptlab/evaluate/bpb_domains.py says which text), sample the suite (probe_sampling.py), then
diagnose the new samples (findings.py). Every unit — a domain's bpb, a batch of samples, a chunk of
findings — is one transaction, so a job killed at any moment resumes where it stopped, and a repeated job
loads each model but never runs it: the summary says "cache hit" and counts zero model calls.
"""

from __future__ import annotations

import gc
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gptlab.checkpoints import discover, load
from gptlab.checkpoints.gptlab_run import read_metrics, run_dir_of
from gptlab.devices import eval_dtype, pick_device
from gptlab.engine import Engine
from gptlab.errors import GptlabError
from gptlab.evaluate import bpb_domains
from gptlab.evaluate.findings import diagnose_stored
from gptlab.evaluate.probe_sampling import register_probes, sample_suite
from gptlab.probes import load_suite
from gptlab.store import Store


@dataclass
class Summary:
    checkpoints: int = 0
    bpb_computed: int = 0
    bpb_cached: int = 0
    generations: int = 0             # sampled rows (each gives one stored sample per length)
    samples_written: int = 0
    samples_cached: int = 0
    findings_computed: int = 0
    findings_cached: int = 0
    model_calls: int = 0             # forward passes of any model during this job
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    bpb: list[dict] = field(default_factory=list)     # one {"model","step","domain","bpb","bytes","tokens"} each

    @property
    def cache_hit(self) -> bool:
        return self.model_calls == 0 and not (self.bpb_computed or self.samples_written or self.findings_computed)

    def lines(self, db) -> list[str]:
        out = [f"{self.checkpoints} checkpoint{'s' * (self.checkpoints != 1)} in {self.seconds:.1f} s: "
               f"bpb {self.bpb_computed} computed, {self.bpb_cached} cached; samples {self.samples_written} "
               f"written ({self.generations} generations), {self.samples_cached} cached; findings "
               f"{self.findings_computed} computed, {self.findings_cached} cached; {self.model_calls} model calls"]
        if self.cache_hit:
            out.append(f"cache hit: every result was already in {db}; no model was run")
        return out


class JobProgress:
    """One bar over the whole job's units (bpb domains, sample rows, findings) on a terminal; a plain line
    every few seconds otherwise (logs and pipes)."""

    def __init__(self, total: int, enabled: bool, every_s: float = 10.0):
        self.total, self.done, self.enabled, self.every_s = total, 0, enabled, every_s
        self.what, self._last, self._bar = "", 0.0, None
        if enabled and sys.stderr.isatty():
            self._bar = Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[what]}"),
                                 console=Console(stderr=True))
            self._bar.start()
            self._task = self._bar.add_task("eval", total=total, what="")

    def say(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.console.print(msg, markup=False, highlight=False)
        else:
            print(msg, file=sys.stderr, flush=True)

    def status(self, what: str) -> None:
        self.what = what
        self.advance(0)

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, what=self.what)
        elif self.enabled and time.monotonic() - self._last > self.every_s:
            self._last = time.monotonic()
            print(f"eval {self.done}/{self.total} units  {self.what}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


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


def _refs(paths):
    seen, out = set(), []
    for p in paths:
        for ref in discover(p):
            key = str(Path(ref.path).resolve())
            if key not in seen:
                seen.add(key)
                out.append(ref)
    return out


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
    refs = _refs(paths)

    run_configs, plans = {}, []
    for ref in refs:
        run_dir = run_dir_of(Path(ref.path)) if ref.format == "gptlab_run" else None
        if run_dir is not None and run_dir not in run_configs:
            run_configs[run_dir] = bpb_domains.read_run_config(run_dir)
        plans.append((ref, run_dir, bpb_domains.domains_for(ref, run_configs.get(run_dir, {}), explicit)))
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
        state = "cached" if not computed else "computed" if not cached else f"{computed} computed"
        say(f"{info.run}@{info.step} bpb ({state}): " + ", ".join(parts))


def _sample(store, loaded, suite, bar, summary, warn, **kw):
    info = loaded.info
    bar.status(f"{info.run}@{info.step}: sampling")
    engine = Engine(loaded.model, loaded.tokenizer, max_rows=kw.pop("batch_rows"))
    counts = sample_suite(store, engine, info.weights_hash, suite, on_rows=bar.advance, **kw)
    for note in engine.notes:
        warn(f"{info.run}@{info.step}: {note}")
    where = f"{info.run}@{info.step} (context {engine.context} tokens)"
    if counts.generated_rows and counts.cropped:
        warn(f"{where}: prompts cropped from the left to fit: {', '.join(counts.cropped)}")
    if counts.generated_rows and counts.shortened:
        short = counts.shortened
        which = ", ".join(f"{k} ({v})" for k, v in short.items()) if len(short) <= 4 else \
            f"{len(short)} probes ({min(short.values())} to {max(short.values())} tokens)"
        warn(f"{where}: fewer than {max(kw['max_tokens'])} tokens generated for {which}")
    if counts.skipped:
        warn(f"{info.run}@{info.step}: the tokenizer cannot encode the prompts of {', '.join(counts.skipped)}; "
             f"skipped")
        bar.advance(len(counts.skipped) * len(kw["temperatures"]) * kw["samples"])
    summary.generations += counts.generated_rows
    summary.samples_written += counts.written
    summary.samples_cached += counts.cached
