"""The benchmark job: lm-evaluation-harness tasks on every checkpoint under the given paths, into the store,
each (checkpoint, task) computed once.

    gptlab bench runs/d12 --tasks hellaswag,arc_easy --db results.sqlite
    gptlab bench ckpt.pt --tasks my_task --include-path my_tasks/ --limit 100 --json
    python -m pytest tests/test_benchmarks.py

Tasks are lm-eval's (names, groups or tags; `--include-path` adds a folder of task YAMLs) and are loaded once,
before any model: an unknown name, a data set that cannot be read (HF_DATASETS_OFFLINE=1 with nothing cached)
or a task that would execute model-written code (`unsafe_code`: it would run outside gptlab's sandbox) is a
one-line error. Each checkpoint is loaded (gptlab/checkpoints: any format), wrapped as lm-eval's model
(gptlab/evaluate/lm_eval_model.py), and every task the store lacks is run through lm-eval's own
`evaluate` (seeded as its `simple_evaluate` seeds), one task at a time, each written in one transaction.

The store key is (weights hash, task, task version, n-shot, document limit, adapter protocol). n-shot is the
one lm-eval uses: --num-fewshot, except for a task whose YAML fixes 0, else the task's own (0 when it states
none). With every score the store keeps lm-eval's value and stderr per metric (and filter), its direction and
aggregation, and each document's value (or its (log-likelihood, weight) pair) for the bootstrap intervals of
`gptlab compare` (gptlab/compare/benchmarks.py). lm-eval's stderr of a metric that is not a mean comes from
BOOTSTRAP_ITERS resamples (lm-eval's default is 100,000), computed in this process (DISABLE_MULTIPROC).
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gptlab.checkpoints import discover, load
from gptlab.devices import pick_device
from gptlab.errors import GptlabError
from gptlab.store import Store

BOOTSTRAP_ITERS = 1000
FEWSHOT_SEED = 1234                       # lm-eval's default fewshot sampler seed, fixed
PAIRED = ("weighted_perplexity", "bits_per_byte")       # per-document (log-likelihood, weight) pairs
SCALAR = ("mean", "perplexity")                          # per-document numbers (perplexity: log-likelihoods)


def require_lm_eval():
    """lm-eval, or the one-line error that names the extra to install."""
    try:
        import lm_eval  # deferred: optional extra [bench]; gptlab runs without lm-evaluation-harness
    except ImportError:
        raise GptlabError("benchmarks need lm-evaluation-harness: pip install 'gptlab[bench]'") from None
    return lm_eval


@dataclass
class BenchSummary:
    checkpoints: int = 0
    computed: int = 0                     # (checkpoint, task) scores run now
    cached: int = 0                       # ... found in the store
    model_calls: int = 0                  # forward passes of any model during this job
    seconds: float = 0.0
    rows: list[dict] = field(default_factory=list)      # one per (checkpoint, task, metric): see `_records`


def parse_tasks(text) -> list[str]:
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t and t.strip()]
    if not names:
        raise GptlabError("--tasks: name at least one lm-eval task (e.g. --tasks hellaswag,arc_easy)")
    return list(dict.fromkeys(names))


def check_limit(limit) -> float | int | None:
    """--limit: documents per task (a whole number), or a fraction of them below 1; None: all."""
    if limit is None:
        return None
    try:
        value = float(limit)
    except (TypeError, ValueError):
        raise GptlabError(f"--limit {limit!r}: expected a number of documents, or a fraction below 1") from None
    if not math.isfinite(value) or value <= 0 or (value >= 1 and value != int(value)):
        raise GptlabError(f"--limit {limit}: expected a whole number of documents >= 1, or a fraction in (0, 1)")
    return int(value) if value >= 1 else value


def load_tasks(names: list[str], include_path=None, num_fewshot: int | None = None):
    """(task manager, {task name: Task} with n-shot set), every name checked and every data set read."""
    lm_eval = require_lm_eval()
    from lm_eval.tasks import TaskManager  # deferred: optional extra [bench]
    if include_path is not None and not Path(include_path).is_dir():
        raise GptlabError(f"--include-path {include_path}: not a folder of task YAMLs")
    if num_fewshot is not None and (isinstance(num_fewshot, bool) or num_fewshot < 0):
        raise GptlabError(f"--num-fewshot {num_fewshot}: must be a whole number >= 0")
    manager = None
    if include_path is not None:        # only the folder's tasks asked for: skip indexing lm-eval's thousands
        manager = TaskManager(include_path=str(include_path), include_defaults=False)
        if not set(names) <= set(manager.all_tasks):
            manager = None
    manager = manager or TaskManager(include_path=str(include_path) if include_path else None)
    known = set(manager.all_tasks)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise GptlabError(f"--tasks {name}: no lm-eval {lm_eval_version(lm_eval)} task, group or tag of that "
                              f"name{hint}; `lm_eval ls tasks` lists them, --include-path DIR adds task YAMLs")
    try:
        tasks = manager.load(names)["tasks"]
    except Exception as e:  # noqa: BLE001 - datasets and lm-eval raise anything from a data set they cannot read
        raise GptlabError(f"--tasks {','.join(names)}: lm-eval cannot load them ({_first_line(e)})") from None
    for name, task in tasks.items():
        if task.get_config("unsafe_code"):
            raise GptlabError(f"task {name} executes model-written code (unsafe_code), which lm-eval would run "
                              f"outside gptlab's sandbox; gptlab bench does not run it")
        own = task.get_config("num_fewshot")
        shots = own if own == 0 or num_fewshot is None else num_fewshot
        task.set_config(key="num_fewshot", value=int(shots or 0))
    return manager, tasks


def lm_eval_version(lm_eval=None) -> str:
    return str(getattr(lm_eval or require_lm_eval(), "__version__", "?"))


def run_benchmarks(paths: list[str], tasks, *, db: str, num_fewshot: int | None = None, limit=None,
                   include_path=None, batch_size: int | None = None, device=None, on_row=None,
                   echo=print) -> BenchSummary:
    """Score every checkpoint under `paths` on `tasks` into the store at `db` (see the module docstring).
    `on_row(record)` receives each (checkpoint, task, metric) record (the CLI's --json)."""
    t0 = time.perf_counter()
    require_lm_eval()
    names, limit = parse_tasks(tasks), check_limit(limit)
    if batch_size is not None and batch_size < 1:
        raise GptlabError(f"--batch-size {batch_size}: must be at least 1")
    device = pick_device(device)
    refs = _refs(paths)
    from gptlab.evaluate.lm_eval_model import GptlabLM  # deferred: optional extra [bench] (subclasses lm-eval's LM)
    os.environ.setdefault("DISABLE_MULTIPROC", "1")     # lm-eval's stderr bootstrap: no process pool
    quiet = logging.getLogger("lm_eval")                # lm-eval's warnings about task YAMLs and n-shot
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    store = None
    try:
        manager, loaded_tasks = load_tasks(names, include_path, num_fewshot)
        summary = BenchSummary(checkpoints=len(refs))
        store = Store(db)
        for ref in refs:
            loaded = load(ref, device)
            store.put_model(loaded.info)
            lm = GptlabLM(loaded=loaded, batch_size=batch_size)
            for name, task in loaded_tasks.items():
                key = dict(weights_hash=loaded.info.weights_hash, task=name, task_version=str(task.VERSION),
                           num_fewshot=int(task.get_config("num_fewshot")), doc_limit=float(limit or 0),
                           protocol=lm.protocol)
                row = store.get_benchmark(*key.values())
                cached = row is not None
                if not cached:
                    row = dict(key, **_run_task(lm, name, task, manager, limit))
                    store.put_benchmark(row)
                    row = store.get_benchmark(*key.values())
                summary.cached += cached
                summary.computed += not cached
                records = _records(loaded.info, row, cached)
                summary.rows += records
                for r in records:
                    if on_row is not None:
                        on_row(r)
                echo(_line(loaded.info, row, records, cached))
            summary.model_calls += lm.calls
            del lm, loaded
            gc.collect()
    finally:
        quiet.setLevel(level)
        if store is not None:
            store.close()
    summary.seconds = time.perf_counter() - t0
    echo(f"{summary.checkpoints} checkpoint{'s' * (summary.checkpoints != 1)} in {summary.seconds:.1f} s: "
         f"task scores {summary.computed} computed, {summary.cached} cached; {summary.model_calls} model calls")
    return summary


def _refs(paths):
    seen, out = set(), []
    for p in paths:
        for ref in discover(p):
            if (key := str(Path(ref.path).resolve())) not in seen:
                seen.add(key)
                out.append(ref)
    return out


def _run_task(lm, name: str, task, manager, limit) -> dict:
    """lm-eval's `evaluate` on one task, seeded as its simple_evaluate seeds (without simple_evaluate's git and
    environment probes): its metrics, per-document values and size (store columns)."""
    lm_eval = require_lm_eval()
    from lm_eval.evaluator import evaluate  # deferred: optional extra [bench]
    random.seed(0)
    np.random.seed(1234)
    torch.manual_seed(1234)
    task.set_fewshot_seed(seed=FEWSHOT_SEED)
    try:
        with contextlib.redirect_stdout(sys.stderr):    # lm-eval prints progress: --json keeps stdout for JSON
            out = evaluate(lm=lm, task_dict=manager.load([task]), limit=limit, log_samples=True,
                           bootstrap_iters=BOOTSTRAP_ITERS)
    except GptlabError:
        raise
    except Exception as e:  # noqa: BLE001 - lm-eval raises anything for a task it cannot run
        raise GptlabError(f"task {name}: lm-eval failed ({_first_line(e)})") from None
    results, better = out["results"][name], out["higher_is_better"].get(name, {})
    aggregation = {m: getattr(fn, "__name__", str(fn)) for m, fn in task.aggregation().items()}
    metrics, docs = {}, {}
    for key, value in results.items():
        metric, sep, filt = key.partition(",")
        if not sep or metric.endswith("_stderr") or metric in ("alias", "name", "sample_len"):
            continue
        metrics[key] = {"metric": metric, "filter": filt, "value": _number(value),
                        "stderr": _number(results.get(f"{metric}_stderr,{filt}")),
                        "higher_is_better": better.get(metric), "aggregation": aggregation.get(metric)}
        docs[key] = _doc_columns(out["samples"].get(name, []), metric, filt, aggregation.get(metric))
    n_docs = out.get("n-samples", {}).get(name, {}).get("effective")
    return {"metrics": metrics, "docs": docs, "lm_eval_version": lm_eval_version(lm_eval),
            "n_docs": int(n_docs if n_docs is not None else len(out["samples"].get(name, [])))}


def _doc_columns(samples: list[dict], metric: str, filt: str, aggregation: str | None) -> dict | None:
    """{"doc_ids": [...], "columns": [[a, b], ...]}: what gptlab/compare/benchmarks.py resamples, or None when
    the aggregation is not one it can (corpus-level scores such as BLEU or F1)."""
    if aggregation not in SCALAR + PAIRED:
        return None
    ids, columns = [], []
    for s in sorted((s for s in samples if s.get("filter") == filt and metric in s), key=lambda s: s["doc_id"]):
        v = s[metric]
        pair = [v[0], v[1]] if aggregation in PAIRED and isinstance(v, (list, tuple)) and len(v) == 2 else [v, 1]
        pair = [_number(x) for x in pair]
        if None in pair:
            return None
        ids.append(int(s["doc_id"]))
        columns.append(pair)
    return {"doc_ids": ids, "columns": columns} if columns else None


def _number(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _records(info, row: dict, cached: bool) -> list[dict]:
    """One record per metric of a stored row: what --json prints (docs/benchmarks.md names the fields)."""
    return [{"model": info.run, "step": info.step, "task": row["task"], "task_version": row["task_version"],
             "num_fewshot": row["num_fewshot"], "limit": row["doc_limit"] or None, "metric": m["metric"],
             "filter": m["filter"], "value": m["value"], "stderr": m["stderr"], "n_docs": row["n_docs"],
             "cached": cached} for m in json.loads(row["metrics_json"]).values()]


def _line(info, row, records, cached: bool) -> str:
    limit = f", limit {row['doc_limit']:g}" if row["doc_limit"] else ""
    scores = ", ".join(f"{r['metric']}{'' if r['filter'] == 'none' else ' [' + r['filter'] + ']'} "
                       f"{r['value']:.4f}" + (f" ± {r['stderr']:.4f}" if r["stderr"] is not None else "")
                       for r in records if r["value"] is not None)
    return (f"{info.run}@{info.step} {row['task']} (v{row['task_version']}, {row['num_fewshot']}-shot, "
            f"{row['n_docs']} docs{limit}; {'cached' if cached else 'computed'}): {scores}")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]
