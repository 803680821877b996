"""Sample a probe suite from one model into the results store, generating only what the store lacks.

    gptlab eval runs/demo --samples 8 --temperature 0.8 --max-tokens 80,200
    python -m pytest tests/test_eval.py -k "samples or sigkill"

A row is (probe, temperature, sample index); it yields one stored sample per requested length, the shorter
texts being prefixes of the longest generation. Sample i of a probe is seeded with
`row_seed(seed, sha256(prompt), i)`, so its text depends on the model, the prompt and the sampling
parameters only (editing a probe's tests re-keys it but regenerates the same text).

Rows are batched by `plan_batches` over the whole suite (all rows, stored or not), so a job planned twice
forms the same batches; each batch's missing rows are generated and written in one transaction. A job
killed at any moment therefore leaves whole batches or nothing, and its restart regenerates the missing
batches with the same composition as the uninterrupted run: identical texts. Across torchrun's ranks
(gptlab/evaluate/ranks.py) these same batches are the units handed out, built from `plan_rows`,
`missing_rows` and `generate_records`, so a rank generates exactly what one process would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from gptlab.engine import Engine, plan_batches, row_seed
from gptlab.errors import GptlabError


@dataclass
class SampleCounts:
    generated_rows: int = 0      # generations run (one per missing row, whatever the number of lengths)
    written: int = 0             # samples stored by this job
    cached: int = 0              # samples that were already stored
    cropped: list[str] = field(default_factory=list)      # probes whose prompt was cropped to fit
    shortened: dict = field(default_factory=dict)         # probe -> tokens generated, when under the longest length
    skipped: list[str] = field(default_factory=list)      # probes the tokenizer cannot encode


@dataclass(frozen=True)
class Row:
    probe: object                # gptlab.probes.Probe
    temperature: float
    index: int


def sampling_warnings(label: str, context: int, counts: SampleCounts, max_new: int, generated: bool) -> list[str]:
    """What a user should know about sampling one checkpoint (`label`, e.g. run@step): prompts cropped or
    continued for fewer tokens than asked (said only when something was generated), probes skipped."""
    out, where = [], f"{label} (context {context} tokens)"
    if generated and counts.cropped:
        out.append(f"{where}: prompts cropped from the left to fit: {', '.join(counts.cropped)}")
    if generated and counts.shortened:
        short = counts.shortened
        which = ", ".join(f"{k} ({v})" for k, v in short.items()) if len(short) <= 4 else \
            f"{len(short)} probes ({min(short.values())} to {max(short.values())} tokens)"
        out.append(f"{where}: fewer than {max_new} tokens generated for {which}")
    if counts.skipped:
        out.append(f"{label}: the tokenizer cannot encode the prompts of {', '.join(counts.skipped)}; skipped")
    return out


def register_probes(store, suite) -> None:
    for p in suite.probes:
        store.put_probe(p.probe_hash, suite.name, suite.version, p.name, p.domain, p.language, p.prompt, p.spec())


def plan_rows(suite, fit, *, temperatures, samples: int, max_new: int,
              counts: SampleCounts) -> tuple[list[Row], list[tuple[list[int], int]]]:
    """Every row of the suite with its (prompt ids, tokens to generate); `fit(prompt, max_new)` is
    `Engine.fit`. Notes cropped, shortened and unencodable probes in `counts`."""
    rows: list[Row] = []
    encoded: list[tuple[list[int], int]] = []        # (prompt ids, tokens to generate) per row
    for p in suite.probes:
        try:
            ids, cropped, n_new = fit(p.prompt, max_new)
        except GptlabError:
            counts.skipped.append(p.name)           # e.g. a character a char-level vocabulary lacks
            continue
        if cropped:
            counts.cropped.append(p.name)
        if n_new < max_new:
            counts.shortened[p.name] = n_new
        for t in temperatures:
            for i in range(samples):
                rows.append(Row(p, t, i))
                encoded.append((ids, n_new))
    return rows, encoded


def missing_rows(store, weights_hash: str, rows: list[Row], lengths, *, temperatures, top_k, top_p,
                 seed) -> tuple[set[int], int]:
    """(indices of the rows lacking a stored sample of some length, samples already stored)."""
    have = {}
    for p in {r.probe for r in rows}:
        for t in temperatures:
            have[p.name, t] = store.existing_samples(weights_hash, p.probe_hash, t, top_k, top_p, seed)
    missing = {j for j, r in enumerate(rows) if any((r.index, n) not in have[r.probe.name, r.temperature]
                                                    for n in lengths)}
    cached = sum((r.index, n) in have[r.probe.name, r.temperature] for r in rows for n in lengths)
    return missing, cached


def generate_records(engine: Engine, weights_hash: str, rows: list[Row], encoded, todo: list[int], lengths, *,
                     seed: int, top_k=None, top_p=None) -> list[dict]:
    """Generate rows `todo` in one batch; one store record per row and length."""
    prompt_hash = {r.probe.name: hashlib.sha256(r.probe.prompt.encode()).hexdigest() for r in (rows[j] for j in todo)}
    done = engine.run_batch([encoded[j][0] for j in todo], [rows[j].temperature for j in todo],
                            [row_seed(seed, prompt_hash[rows[j].probe.name], rows[j].index) for j in todo],
                            [encoded[j][1] for j in todo], top_k=top_k, top_p=top_p)
    records = []
    for j, c in zip(todo, done):
        r = rows[j]
        for n in lengths:
            ids = c.tokens[:n]
            records.append({"weights_hash": weights_hash, "probe_hash": r.probe.probe_hash,
                            "temperature": r.temperature, "top_k": top_k, "top_p": top_p, "seed": seed,
                            "sample_index": r.index, "max_tokens": n,
                            "completion": engine.tokenizer.decode(ids), "n_tokens": len(ids)})
    return records


def sample_suite(store, engine: Engine, weights_hash: str, suite, *, temperatures, max_tokens, samples: int,
                 seed: int, top_k=None, top_p=None, on_rows=None) -> SampleCounts:
    """Generate and store every missing sample of `suite` for one model; `on_rows(n)` reports progress."""
    counts = SampleCounts()
    lengths = tuple(sorted(set(max_tokens)))
    rows, encoded = plan_rows(suite, engine.fit, temperatures=temperatures, samples=samples,
                              max_new=lengths[-1], counts=counts)
    missing, counts.cached = missing_rows(store, weights_hash, rows, lengths, temperatures=temperatures,
                                          top_k=top_k, top_p=top_p, seed=seed)
    if on_rows is not None and len(rows) - len(missing):
        on_rows(len(rows) - len(missing))
    for batch in plan_batches([len(e[0]) for e in encoded], lengths[-1], engine.max_rows):
        todo = [j for j in batch if j in missing]
        if not todo:
            continue
        records = generate_records(engine, weights_hash, rows, encoded, todo, lengths, seed=seed, top_k=top_k,
                                   top_p=top_p)
        counts.written += store.put_samples(records)      # the whole batch, one transaction; a row a
        counts.generated_rows += len(todo)                 # concurrent job stored first is not counted
        if on_rows is not None:
            on_rows(len(todo))
    return counts
