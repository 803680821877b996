"""Stored results of several models as resamplable units: what `compare` ranks and `check` judges claims on.

    gptlab compare runs/code_heavy runs/prose_heavy --db results.sqlite
    gptlab check examples/claims.toml --db results.sqlite
    python -m pytest tests/test_compare.py tests/test_claims.py

A model is named by a PATH (a run directory: its newest checkpoint; a checkpoint), a run name in the store, or
either with `@STEP`; a run directory that is not on this machine is looked up by its folder's name. Its label
is `run@step`, or the target as given when that is ambiguous. `Measurements` reads the store once and hands
out `gptlab.stats.bootstrap.Units`:

  * bpb of a data domain, of a group of domains (the `group` of the run config's `[[data.domains]]`; for
    the shipped corpus the groups of gptlab/presets/demo.toml), or of all domains: documents (nats, bytes)
    resampled within their domain. Every model is read on the same text: for each domain the (data hash,
    bpb protocol) most models were scored on; a model scored on other text lacks that domain, and pooled
    numbers use only the domains every model has.
  * failure rates (one mode, or `any`: at least one failure) and pass@k of a probe selection: samples at one
    temperature (0.8 when every model has it, else the most sampled temperature they share), resampled by
    generation within their probe — the 80- and 200-token samples of one generation are one unit, because
    one is the other's prefix. pass@k is gptlab.diagnose.rollup.pass_at_k(n, c, k) per probe on the
    samples of one length (the longest unless asked), n counting the samples whose tests ran, averaged over
    probes; each resample evaluates the estimator on the resampled count c.
  * short and long prompts: the probes a suite pairs with `twin_of` (long twin_of short).
  * lm-evaluation-harness scores (`gptlab bench`): each task's metrics over its documents, at one setting per
    task (gptlab/compare/benchmarks.py).
"""

from __future__ import annotations

import json
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptlab.compare.benchmarks import measure as measure_benchmarks
from gptlab.compare.select import detector_version, select
from gptlab.config import PRESETS_DIR
from gptlab.diagnose.rollup import pass_at_k as defined_pass_at_k
from gptlab.errors import GptlabError
from gptlab.probes import load_suite
from gptlab.stats import bootstrap as stats
from gptlab.stats.bootstrap import Units

PREFERRED_TEMPERATURE = 0.8
ANY = "any"


@dataclass
class ModelRef:
    label: str
    target: str                 # what the user wrote
    row: dict                   # the store's `models` row

    @property
    def weights_hash(self) -> str:
        return self.row["weights_hash"]


def pick(store, target: str) -> dict:
    """The `models` row a target names: its @STEP, else the newest checkpoint it matches."""
    base, step = target, None
    head, sep, tail = target.rpartition("@")
    if sep and tail.isdigit() and not Path(target).exists():
        base, step = head, int(tail)
    try:
        rows = select(store, [base]).models
    except GptlabError:
        # a run directory that is not on this machine: its run name (the folder's name) in the store
        name = Path(base).name
        if name == base or Path(base).exists() or not any(m["run"] == name for m in store.models()):
            raise
        rows = select(store, [name]).models
    if not rows:
        raise GptlabError(f"{target}: no results in {store.path}; evaluate it first: gptlab eval {base} "
                          f"--db {store.path}")
    if step is not None:
        hits = [r for r in rows if r["step"] == step]
        if not hits:
            steps = ", ".join(str(r["step"]) for r in rows)
            raise GptlabError(f"{target}: no checkpoint at step {step} in {store.path} (steps: {steps})")
        return hits[-1]
    return max(rows, key=lambda r: (r["step"] is not None, r["step"] or 0, r["updated_at"] or 0))


def resolve(store, targets: list[str], rows: list[dict] | None = None) -> list[ModelRef]:
    """ModelRefs for targets (rows: already known `models` rows, one per target); labels are unique."""
    rows = rows or [pick(store, t) for t in targets]
    seen = {}
    for t, r in zip(targets, rows):
        if r["weights_hash"] in seen:
            raise GptlabError(f"{seen[r['weights_hash']]} and {t} are the same weights (hash {r['weights_hash']}); "
                              f"name each model once")
        seen[r["weights_hash"]] = t
    labels = [f"{r['run']}@{r['step']}" if r["run"] and r["step"] is not None else t for t, r in zip(targets, rows)]
    if len(set(labels)) < len(labels):        # two runs of one name: the targets, distinct as weights are
        labels = list(targets)
    return [ModelRef(label, t, r) for label, t, r in zip(labels, targets, rows)]


def _json(text, default):
    try:
        return json.loads(text) if text else default
    except (TypeError, json.JSONDecodeError):
        return default


def shipped_groups() -> dict[str, str]:
    """Groups of the shipped corpus's domains, as the demo preset declares them."""
    raw = tomllib.loads((PRESETS_DIR / "demo.toml").read_text(encoding="utf-8"))
    return {d["name"]: d.get("group", "") for d in raw.get("data", {}).get("domains", [])}


def pass_at_k(n: int, c: int, k: int) -> float:
    return float(defined_pass_at_k(n, c, k))


class Measurements:
    """Everything `compare` and `check` measure about `models`, read once from `store`."""

    def __init__(self, store, models: list[ModelRef], *, suite: str | None = "default",
                 temperature: float | None = None):
        self.store, self.models = store, {m.label: m for m in models}
        self.notes: list[str] = []
        self._load_bpb()
        self._load_samples(suite, temperature)
        self.benchmarks = measure_benchmarks(store, self.models)
        self.notes += self.benchmarks.notes

    def model(self, label: str) -> ModelRef:
        return self.models[label]

    # ------------------------------------------------------------ bits per byte

    def _load_bpb(self):
        hashes = [m.weights_hash for m in self.models.values()]
        rows = self.store.bpb_rows(hashes)
        by_domain = defaultdict(list)
        for r in rows:
            by_domain[r["domain"]].append(r)
        self.bpb_rows: dict[str, dict[str, dict]] = {}          # domain -> label -> row
        for domain, rs in sorted(by_domain.items()):
            scored, newest = defaultdict(set), {}             # (data hash, protocol) -> models, newest time
            for r in rs:
                key = (r["data_hash"], r["protocol"])
                scored[key].add(r["weights_hash"])
                newest[key] = max(newest.get(key, 0), r["created_at"] or 0)
            text = max(scored, key=lambda k: (len(scored[k]), newest[k]))
            chosen = {}
            for label, m in self.models.items():
                hit = [r for r in rs if r["weights_hash"] == m.weights_hash and (r["data_hash"], r["protocol"]) == text]
                if hit:
                    chosen[label] = max(hit, key=lambda r: r["created_at"] or 0)
                elif any(r["weights_hash"] == m.weights_hash for r in rs):
                    self.notes.append(f"{label}: domain {domain} was scored on other text than the other models; "
                                      f"left out")
            self.bpb_rows[domain] = chosen
        self.domains = sorted(self.bpb_rows)
        self.common_domains = [d for d in self.domains if len(self.bpb_rows[d]) == len(self.models)]
        groups = shipped_groups()
        for run in self.store.runs():
            if run["run"] in {m.row["run"] for m in self.models.values()}:
                for d in _json(run["config_json"], {}).get("data", {}).get("domains") or []:
                    if d.get("name") and d.get("group"):
                        groups[d["name"]] = d["group"]
        self.group_of = {d: groups.get(d, "") for d in self.domains}

    def groups(self) -> dict[str, list[str]]:
        """group -> the domains of it that every model was scored on."""
        out = defaultdict(list)
        for d in self.common_domains:
            if self.group_of[d]:
                out[self.group_of[d]].append(d)
        return dict(sorted(out.items()))

    def bpb(self, label: str, domain: str | None = None, group: str | None = None) -> Units:
        """bpb of one domain, a group (pooled) or every common domain (domain and group both None)."""
        if domain is not None:
            if domain not in self.bpb_rows:
                known = ", ".join(self.domains) or "none"
                raise GptlabError(f"domain '{domain}' has no bpb in the store (domains: {known})")
            if label not in self.bpb_rows[domain]:
                raise GptlabError(f"{label} has no bpb for domain '{domain}' on the text the others were scored on")
            domains = [domain]
        elif group is not None:
            groups = self.groups()
            if group not in groups:
                known = ", ".join(groups) or "none"
                raise GptlabError(f"group '{group}' has no domain scored for every model (groups: {known})")
            domains = groups[group]
        else:
            domains = self.common_domains
            if not domains:
                raise GptlabError("no bpb domain was scored for every model: run gptlab eval on each")
        columns, strata, key = [], [], []
        for s, d in enumerate(domains):
            row = self.bpb_rows[d][label]
            docs = _json(row["docs_json"], [])
            if not docs:                                  # a store without per-document sums: one unit
                docs = [[row["nll"], row["bytes"]]]
            # an empty document scores no byte: it is no unit, and pairing needs the same kept documents
            kept = [i for i, (_, nbytes) in enumerate(docs) if nbytes > 0]
            columns += [docs[i] for i in kept]
            strata += [s] * len(kept)
            key.append((d, row["data_hash"], row["protocol"], tuple(kept)))
        nbytes = np.array([b for _, b in columns], dtype=float)
        # Kish's effective number of documents: one huge document among crumbs counts as about one
        effective = float(nbytes.sum() ** 2 / (nbytes ** 2).sum()) if len(nbytes) else 0.0
        return Units(np.array(columns, dtype=float), np.array(strata), stats.bpb_statistic,
                     name=f"{label} bpb {'+'.join(domains)}", pair_key=tuple(key),
                     info={"documents": len(columns), "effective": effective, "domains": domains})

    # ------------------------------------------------------------ samples

    def _load_samples(self, suite, temperature):
        hashes = [m.weights_hash for m in self.models.values()]
        self.detector_version = detector_version(self.store, hashes)
        rows = [r for r in self.store.sample_rows(hashes, self.detector_version) if r["failures_json"] is not None]
        self.suite = None
        if suite is not None and rows:
            the_suite = load_suite(suite)
            self.suite = f"{the_suite.name} v{the_suite.version}"
            wanted = {p.probe_hash for p in the_suite.probes}
            rows = [r for r in rows if r["probe_hash"] in wanted]
        per_model = defaultdict(Counter)
        for r in rows:
            per_model[r["weights_hash"]][r["temperature"]] += 1
        shared = set.intersection(*(set(per_model[h]) for h in hashes)) if all(per_model[h] for h in hashes) else set()
        if temperature is not None:
            self.temperature = float(temperature)
        elif PREFERRED_TEMPERATURE in shared:
            self.temperature = PREFERRED_TEMPERATURE
        elif shared:
            self.temperature = max(shared, key=lambda t: sum(per_model[h][t] for h in hashes))
        else:
            counts = Counter(r["temperature"] for r in rows)
            self.temperature = counts.most_common(1)[0][0] if counts else None
        self.samples = defaultdict(list)                                      # label -> rows
        by_hash = {m.weights_hash: label for label, m in self.models.items()}
        self.probes: dict[str, dict] = {}
        for r in rows:
            if r["temperature"] != self.temperature:
                continue
            spec = _json(r["spec_json"], {})
            self.probes.setdefault(r["probe"], {"domain": r["domain"], "twin_of": spec.get("twin_of"),
                                                "tests": bool(spec.get("tests"))})
            self.samples[by_hash[r["weights_hash"]]].append(
                dict(r, failures=_json(r["failures_json"], []),
                     passed=None if r["passed"] is None else bool(r["passed"])))
        versions = defaultdict(set)
        for rs in self.samples.values():
            for r in rs:
                versions[r["probe"]].add(r["probe_hash"])
        for name in sorted(n for n, v in versions.items() if len(v) > 1):
            self.notes.append(f"probe {name}: samples of {len(versions[name])} versions of its prompt are pooled "
                              f"(name a suite to keep one)")
        for label in self.models:
            if not self.samples[label] and rows:
                self.notes.append(f"{label}: no diagnosed samples at temperature {self.temperature:g}")

    def twins(self) -> list[tuple[str, str]]:
        """(short, long) probe pairs with samples."""
        return sorted((p["twin_of"], name) for name, p in self.probes.items()
                      if p["twin_of"] and p["twin_of"] in self.probes)

    def select_probes(self, probe=None, domain=None, prompts=None) -> list[str]:
        """Probe names by name (one or a list), probe domain, or prompt length ("short"/"long" twins)."""
        if not self.probes:
            raise GptlabError("no diagnosed probe samples for these models in the store: run gptlab eval "
                              "(without --no-probes)")
        if probe is not None:
            names = [probe] if isinstance(probe, str) else list(probe)
            for n in names:
                if n not in self.probes:
                    known = ", ".join(sorted(self.probes))
                    raise GptlabError(f"probe '{n}' has no samples in the store (probes: {known})")
            return names
        if domain is not None:
            names = sorted(n for n, p in self.probes.items() if p["domain"] == domain)
            if not names:
                known = ", ".join(sorted({p["domain"] for p in self.probes.values()}))
                raise GptlabError(f"probe domain '{domain}' has no samples (domains: {known})")
            return names
        if prompts is not None:
            pairs = self.twins()
            if not pairs:
                raise GptlabError("no short/long twin probes (twin_of) have samples")
            return [s for s, _ in pairs] if prompts == "short" else [lo for _, lo in pairs]
        return sorted(self.probes)

    def _generations(self, label, probes, max_tokens=None, longest=False):
        """probe -> generation key -> rows, for `probes` of model `label`."""
        out = {p: defaultdict(list) for p in probes}
        rows = [r for r in self.samples[label] if r["probe"] in out]
        if longest:
            top = {}
            for r in rows:
                top[r["probe"]] = max(top.get(r["probe"], 0), r["max_tokens"])
            rows = [r for r in rows if r["max_tokens"] == top[r["probe"]]]
        for r in rows:
            if max_tokens is None or r["max_tokens"] == max_tokens:
                key = (r["probe_hash"], r["top_k"], r["top_p"], r["seed"], r["sample_index"])
                out[r["probe"]][key].append(r)
        return {p: g for p, g in out.items() if g}

    def failure_rate(self, label: str, probes: list[str], mode: str = ANY, max_tokens: int | None = None) -> Units:
        """Share of samples of `probes` showing `mode` (ANY: any failure); one unit per generation."""
        columns, strata = [], []
        for s, (probe, gens) in enumerate(self._generations(label, probes, max_tokens).items()):
            for rows in gens.values():
                hits = sum(bool(r["failures"]) if mode == ANY else mode in r["failures"] for r in rows)
                columns.append((hits, len(rows)))
                strata.append(s)
        return Units(np.array(columns, dtype=float).reshape(-1, 2), np.array(strata), stats.rate_statistic,
                     name=f"{label} failure {mode} {','.join(probes)} {max_tokens}",
                     info={"samples": int(sum(c[1] for c in columns)), "generations": len(columns)})

    def judged(self, label: str, probe: str) -> int:
        """Generations of a probe whose longest sample has a test outcome: pass@k's n."""
        gens = self._generations(label, [probe], longest=True).get(probe, {})
        return sum(rows[0]["passed"] is not None for rows in gens.values())

    def pass_at(self, label: str, probes: list[str], k: int = 1, max_tokens: int | None = None) -> Units:
        """Mean over probes of pass@k (rollup's estimator) on the samples of one length — the longest unless
        `max_tokens` is given; one unit per generation."""
        testable = [p for p in probes if self.probes[p]["tests"]]
        if not testable:
            raise GptlabError(f"pass@k needs probes with tests; none among {', '.join(probes)}")
        columns, strata, tables = [], [], []
        gens_of = self._generations(label, testable, max_tokens=max_tokens, longest=max_tokens is None)
        for probe, gens in gens_of.items():
            judged = [rows[0]["passed"] for rows in gens.values() if rows[0]["passed"] is not None]
            if not judged:
                continue
            n = len(judged)
            if k > n:
                raise GptlabError(f"pass@{k} of probe '{probe}' needs at least {k} samples; {label} has {n}")
            tables.append(np.array([pass_at_k(n, c, k) for c in range(n + 1)]))
            columns += [(float(p), 1.0) for p in judged]
            strata += [len(tables) - 1] * n
        if not tables:
            raise GptlabError(f"{label}: no executed tests among {', '.join(testable)} (was eval run with --no-exec?)")
        return Units(np.array(columns, dtype=float), np.array(strata), stats.per_stratum_mean(tables),
                     name=f"{label} pass@{k} {','.join(testable)}", info={"samples": len(columns),
                                                                         "probes": len(tables)})
