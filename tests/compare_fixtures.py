"""A results store with three models whose differences are known, built through the Store API.

code@240 (run "code", trained on code) has the lowest code bpb; prose@240 the lowest web bpb; gpt2 (an HF
folder, no step) is worst on code. finance_sec was scored identically for code and prose (no difference).
Probes: quicksort and java_add have long twins; short prompts fail more. quicksort's tests pass in
QUICKSORT_PASSES[(model, probe)] of SAMPLES generations.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from gptlab.checkpoints import ModelInfo
from gptlab.diagnose import DETECTOR_VERSION
from gptlab.store import Store

SAMPLES = 8
LENGTHS = (80, 200)
DOCS = 12
# model -> domain -> bpb of every document (documents differ in difficulty by the same factors for all models)
BPB = {"code": {"code_python": 1.5, "web_en": 2.3, "finance_sec": 2.0},
       "prose": {"code_python": 2.3, "web_en": 1.8, "finance_sec": 2.0},
       "gpt2": {"code_python": 2.6, "web_en": 2.0, "finance_sec": 2.1}}
GROUPS = {"code_python": "code", "web_en": "general", "finance_sec": "finance"}
QUICKSORT_PASSES = {("code", "code_quicksort"): 1, ("code", "code_quicksort_long"): 6,
                    ("prose", "code_quicksort"): 0, ("prose", "code_quicksort_long"): 1,
                    ("gpt2", "code_quicksort"): 0, ("gpt2", "code_quicksort_long"): 0}
# (model, probe) -> generations (of SAMPLES) with a failure; every sample of a failing generation fails
FAILING = {("code", "complete_java_add"): 6, ("code", "complete_java_add_long"): 2,
           ("prose", "complete_java_add"): 8, ("prose", "complete_java_add_long"): 5,
           ("gpt2", "complete_java_add"): 8, ("gpt2", "complete_java_add_long"): 8,
           ("code", "general_water"): 4, ("prose", "general_water"): 1, ("gpt2", "general_water"): 3}
TESTS = "assert quicksort([3, 1, 2]) == [1, 2, 3]"
PROBES = {  # name -> (domain, language, prompt, twin_of, tests)
    "code_quicksort": ("code", "python", "def quicksort(arr):", None, TESTS),
    "code_quicksort_long": ("code", "python", 'def quicksort(arr):\n    """Sort."""\n', "code_quicksort", TESTS),
    "complete_java_add": ("code", "java", "public int add(int a, int b) {", None, None),
    "complete_java_add_long": ("code", "java", "class C {\n public int add(int a, int b) {", "complete_java_add",
                               None),
    "general_water": ("general", None, "Water boils at", None, None),
}
HASH = {"code": "h-code", "prose": "h-prose", "gpt2": "h-gpt2"}


def _info(model: str, path: str) -> ModelInfo:
    hf = model == "gpt2"
    return ModelInfo(format="hf" if hf else "gptlab_run", path=path, run=model, step=None if hf else 240,
                     family="hf:gpt2" if hf else "gptlab", params=124_000_000 if hf else 3_000_000,
                     vocab_size=50257 if hf else 2048, context=1024 if hf else 256,
                     tokens_seen=None if hf else 240 * 8192, weights_hash=HASH[model], tokenizer_hash="t",
                     config={}, meta={})


def _bpb(bpb: float, difficulty: np.ndarray, noise: np.ndarray):
    nbytes = (1000 + 200 * np.arange(DOCS)).astype(int)
    docs = [SimpleNamespace(nll=float(bpb * math.log(2) * b * d * (1 + e)), bytes=int(b))
            for b, d, e in zip(nbytes, difficulty, noise)]
    nll = sum(d.nll for d in docs)
    return SimpleNamespace(bpb=nll / (math.log(2) * nbytes.sum()), nll=nll, bytes=int(nbytes.sum()),
                           tokens=int(nbytes.sum() // 3), docs=docs)


def build_store(path, root: str = "/runs") -> Store:
    store = Store(path)
    rng = np.random.default_rng(0)
    difficulty = {d: rng.lognormal(0, 0.25, DOCS) for d in GROUPS}
    for model in BPB:
        store.put_model(_info(model, f"{root}/{model}/checkpoints/step_000240" if model != "gpt2" else f"{root}/gpt2"))
        for domain, bpb in BPB[model].items():
            same = domain == "finance_sec" and model != "gpt2"
            noise = np.zeros(DOCS) if same else rng.normal(0, 0.02, DOCS)
            store.put_bpb(HASH[model], domain, f"data-{domain}", "bpb-1", _bpb(bpb, difficulty[domain], noise))
        if model != "gpt2":
            config = {"data": {"domains": [{"name": d, "group": g, "weight": 1.0} for d, g in GROUPS.items()]}}
            store.put_run(model, f"{root}/{model}", config, 8192, [])
    for name, (domain, language, prompt, twin, tests) in PROBES.items():
        spec = {"name": name, "domain": domain, "prompt": prompt, "language": language, "twin_of": twin,
                "tests": tests, "requires": []}
        store.put_probe(f"p-{name}", "default", "1", name, domain, language, prompt, spec)
    rows = [{"weights_hash": HASH[m], "probe_hash": f"p-{p}", "temperature": 0.8, "top_k": None, "top_p": None,
             "seed": 0, "sample_index": i, "max_tokens": n, "completion": f"{m} {p} {i} {n}", "n_tokens": n}
            for m in BPB for p in PROBES for i in range(SAMPLES) for n in LENGTHS]
    store.put_samples(rows)
    found = []
    by_hash = {h: m for m, h in HASH.items()}
    for s in store.samples_without_findings(DETECTOR_VERSION):
        model, probe, i = by_hash[s["weights_hash"]], s["probe"], s["sample_index"]
        passed = None
        failures = []
        if PROBES[probe][4]:
            passed = i < QUICKSORT_PASSES[(model, probe)]
            failures = [] if passed else ["test_failure"]
        elif i < FAILING.get((model, probe), 0):
            failures = ["syntax_error"] if domain_of(probe) == "code" else ["topic_drift"]
        found.append({"sample_id": s["id"], "detector_version": DETECTOR_VERSION, "failures": failures,
                      "metrics": {}, "evidence": {}, "passed": passed})
    store.put_findings(found)
    return store


def domain_of(probe: str) -> str:
    return PROBES[probe][0]
