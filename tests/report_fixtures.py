"""A results store built through the Store API, shaped like a real run (the seed assessment's d12 curve)."""

from __future__ import annotations

import math
from types import SimpleNamespace

from gptlab.checkpoints import ModelInfo
from gptlab.diagnose import DETECTOR_VERSION
from gptlab.store import Store

TOKENS_PER_STEP = 65536
PARAMS = 185_000_000
SEED_CURVE = [1.6798, 1.6399, 1.6256, 1.5952, 1.5680, 1.5363, 1.5101, 1.4683, 1.4463, 1.4176]
SEED_LOSS = [1.3968, 1.3723, 1.4654, 1.3630, 1.1359, 1.1988, 1.2288, 1.1691, 1.0767, 1.0616]
# domain -> (offset from the overall curve, bytes per token, mixture weight, probe group)
DOMAINS = {"code_python": (0.35, 3.1, 1.0, "code"), "finance_sec": (-0.45, 4.4, 1.5, "finance"),
           "web_en": (0.05, 4.2, 6.0, "general")}
ECHO = "The function does not take any additional arguments."
LOOP = "the ecosystem of the ecosystem, "


def model_info(run: str, step: int, path: str) -> ModelInfo:
    return ModelInfo(format="gptlab_run", path=path, run=run, step=step, family="gptlab", params=PARAMS,
                     vocab_size=32768, context=2048, tokens_seen=step * TOKENS_PER_STEP,
                     weights_hash=f"{run}-{step:06d}", tokenizer_hash="tok",
                     config={"n_layer": 12, "n_embd": 768, "n_head": 6, "vocab_size": 32768, "sequence_len": 2048},
                     meta={"step": step, "tokens_per_step": TOKENS_PER_STEP})


def bpb_result(bpb: float, n_bytes: int, bytes_per_token: float):
    nll = bpb * math.log(2) * n_bytes
    docs = [SimpleNamespace(nll=nll / 4, bytes=n_bytes // 4) for _ in range(4)]
    return SimpleNamespace(bpb=bpb, nll=nll, bytes=n_bytes, tokens=int(n_bytes / bytes_per_token), docs=docs)


def run_config(steps: int) -> dict:
    return {"name": "d12", "model": {"depth": 12}, "train": {"steps": steps, "total_batch_tokens": TOKENS_PER_STEP},
            "tokens_per_step": TOKENS_PER_STEP,
            "data": {"domains": [{"name": d, "weight": w, "group": g} for d, (_, _, w, g) in DOMAINS.items()]}}


def add_run(store: Store, run: str = "d12", steps=None, root: str = "/runs", samples: bool = True) -> list[str]:
    """A run with one checkpoint per entry of `steps` (default: the seed's ten, 5000 apart)."""
    steps = steps or [5000 * (i + 1) for i in range(len(SEED_CURVE))]
    metrics = []
    hashes = []
    for i, step in enumerate(steps):
        overall = SEED_CURVE[i]
        info = model_info(run, step, f"{root}/{run}/checkpoints/step_{step:06d}")
        store.put_model(info)
        hashes.append(info.weights_hash)
        for domain, (offset, bpt, _, _) in DOMAINS.items():
            store.put_bpb(info.weights_hash, domain, "data", "v1", bpb_result(overall + offset, 40_000, bpt))
        metrics.append({"step": step, "tokens_seen": step * TOKENS_PER_STEP, "train_loss": SEED_LOSS[i],
                        "lr": 0.02, "val_bpb": overall,
                        "val_bpb_domains": {d: overall + o for d, (o, _, _, _) in DOMAINS.items()}})
    store.put_run(run, f"{root}/{run}", run_config(steps[-1]), TOKENS_PER_STEP, metrics)
    if samples:
        add_samples(store, hashes[-2:] if len(hashes) > 1 else hashes)
    return hashes


PROBES = {  # name -> (domain, language, prompt)
    "code_python": ("code", "python", f"Write a function that appends a value to a list. {ECHO}\ndef add(xs, v):"),
    "sec_revenue": ("finance", None, "Item 7. Revenue increased 12% to $4.2 billion in fiscal 2025."),
    "sec_risk": ("finance", None, "Item 1A. Risk Factors. Our business depends on our ecosystem."),
}


def _findings(probe: str, late: bool, temperature: float, index: int):
    """(completion, failures, evidence, passed) for one sample: code echoes, risk loops, revenue works."""
    if probe == "code_python":
        text = f"{ECHO} To add a new value you must do so. {ECHO}"
        return text, ["prompt_echo", "no_code"], {"prompt_echo": {"span": ECHO, "words": 8,
                                                                  "completion_offset": 0}}, False
    if probe == "sec_risk" and (late or temperature > 0.9):
        text = "Our risk is " + LOOP * 5
        return text, ["repetition_loop", "word_fixation"], {
            "repetition_loop": {"unit": LOOP.strip(), "copies": 5.0, "offset": 12}}, None
    text = f"The effective growth was {5 + index}.4% in the prior year, including $4.7 million."
    return text, [], {}, None


def add_samples(store: Store, hashes: list[str]) -> None:
    probe_hash = {}
    for name, (domain, language, prompt) in PROBES.items():
        probe_hash[name] = f"p-{name}"
        store.put_probe(probe_hash[name], "default", "1", name, domain, language, prompt, {"name": name})
    rows = []
    for h in hashes:
        for name in PROBES:
            for temperature in (0.8, 1.0) if h == hashes[-1] else (0.8,):
                for max_tokens in (80, 200):
                    for index in range(2):
                        text = _findings(name, h == hashes[-1], temperature, index)[0]
                        rows.append({"weights_hash": h, "probe_hash": probe_hash[name], "temperature": temperature,
                                     "top_k": None, "top_p": None, "seed": 0, "sample_index": index,
                                     "max_tokens": max_tokens, "completion": text, "n_tokens": 20})
    store.put_samples(rows)
    found = []
    late = {h: h == hashes[-1] for h in hashes}
    for s in store.samples_without_findings(DETECTOR_VERSION):
        _, failures, evidence, passed = _findings(s["probe"], late[s["weights_hash"]], s["temperature"],
                                                  s["sample_index"])
        found.append({"sample_id": s["id"], "detector_version": DETECTOR_VERSION, "failures": failures,
                      "metrics": {}, "evidence": evidence, "passed": passed})
    store.put_findings(found)
