"""The inference rows of bench/gpu_acceptance.py: bits-per-byte and sampling throughput against transformers
on GPT-2 124M's shape (12 layers, 12 heads, width 768, 1,024 positions, vocabulary 50,257), same weights.

    python bench/gpu_acceptance.py --row bpb          (one row alone; the parent runs each so)
    python bench/gpu_acceptance.py --row sampling

Weights: transformers' `GPT2LMHeadModel` randomly initialised with torch seed 0, and gptlab's GPT2 given the
identical tensors; both in the evaluation dtype (bfloat16 on CUDA: `gptlab eval`'s default there; float32 on a
CPU). Speed does not depend on the values, and nothing can be downloaded on the GPU machine.

bpb: the shipped corpus's 7 validation files and the peers' held-out stdlib files, tokenized by llm.c's GPT-2
BPE, cycled to `bpb_tokens` tokens; gptlab runs `score_tokens` (its batch size chosen from free memory) and
transformers the same windows in the same batches (bench/bpb_vs_transformers.py's `run_hf`: logits, then
cross-entropy over the scored positions; also timed with `logits_to_keep`). Best of `bpb_repeats` after one
warm-up, alternating.

sampling: `prompts` random prompts of `prompt_len` tokens, `samples` samples each, `new_tokens` tokens at
temperature 0.8 without early stops; transformers `generate(do_sample=True, num_return_sequences=samples)`
(bench/generate_vs_transformers.py's `run_hf`), gptlab `Engine.run_batch` with its default decoding on the
device (a CUDA graph on CUDA; the fixed-shape "static" path on a CPU) and, for reference, the eager loop.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from acceptance.common import Shapes, peak_gib, reset_peak, timed

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def _models(s: Shapes, device: torch.device):
    from transformers import GPT2Config, GPT2LMHeadModel  # deferred: optional (the row is skipped without it)
    from transformers.utils import logging as hf_logging  # deferred: as above

    from gptlab.models.gpt2 import GPT2, config_from_hf, from_hf_state_dict  # deferred: child process only

    hf_logging.set_verbosity_error()
    layers, heads, width, positions = s.gpt2
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=layers, n_head=heads, n_embd=width, vocab_size=50257,
                                    n_positions=positions)).eval()
    ours = GPT2.from_state_dict(config_from_hf(hf.config), from_hf_state_dict(hf.state_dict()))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return hf.to(device, dtype), ours.to(device, dtype), dtype


def _documents(tok, max_tokens: int) -> list[list[int]]:
    """Documents (each led by <|endoftext|>) of the shipped validation corpus and val.txt, cycled until
    `max_tokens` scored tokens."""
    from gptlab.data import iter_documents  # deferred: child process only

    texts = [d for f in sorted((ROOT / "gptlab" / "corpus").glob("*.val.jsonl")) for d in iter_documents(f)]
    val = (ROOT / "tests" / "fixtures" / "peers" / "text" / "val.txt").read_text()
    spans = json.loads((ROOT / "tests" / "fixtures" / "peers" / "text" / "manifest.json").read_text())["val"]
    texts += [val[sp["start"]:sp["end"]] for sp in spans]
    encoded = [[tok.bos_id] + ids for ids in tok.encode_batch(texts) if ids]
    out, total, i = [], 0, 0
    while total < max_tokens:
        ids = encoded[i % len(encoded)][:max_tokens - total + 1]
        out.append(ids)
        total += len(ids) - 1
        i += 1
    return out


def bpb(s: Shapes, device: torch.device, args) -> dict:
    sys.path.insert(0, str(BENCH))
    import bpb_vs_transformers as peer  # deferred: imports transformers (this row is skipped without it)

    from gptlab.checkpoints.bpe_files import read_llmc_tokenizer  # deferred: child process only
    from gptlab.evaluate.bpb import score_tokens  # deferred: as above

    hf, ours, dtype = _models(s, device)
    tok = read_llmc_tokenizer(ROOT / "tests" / "fixtures" / "peers" / "llmc" / "tokenizer_stdlib_bpe50257.bin")
    seqs = _documents(tok, s.bpb_tokens)
    n_tokens = sum(len(q) - 1 for q in seqs)
    context = s.gpt2[3]
    batch = _batch_size_of(ours, device)                  # what score_tokens picks: transformers gets the same
    plan = peer.batches(seqs, context, context // 2, batch)
    token_bytes = torch.as_tensor(tok.token_bytes(), dtype=torch.long)
    runs = {"gptlab": lambda: score_tokens(ours, seqs, tok.token_bytes(), device=device).bpb,
            "transformers": lambda: peer.run_hf(hf, plan, token_bytes, device, keep=False)[0],
            "transformers+logits_to_keep": lambda: peer.run_hf(hf, plan, token_bytes, device, keep=True)[0]}
    best, value, peaks = {k: float("inf") for k in runs}, {}, {}
    for rep in range(s.bpb_repeats + 1):                    # round 0 warms up
        for name, fn in runs.items():
            reset_peak(device)
            dt, value[name] = timed(fn, device)
            peaks[name] = peak_gib(device)
            if rep:
                best[name] = min(best[name], dt)
    tps = {k: round(n_tokens / v) for k, v in best.items()}
    return {"tokens": n_tokens, "windows": sum(map(len, plan)), "batch": batch, "dtype": str(dtype)[6:],
            "tokens_per_s": tps, "ratio": round(tps["gptlab"] / tps["transformers"], 2),
            "ratio_logits_to_keep": round(tps["gptlab"] / tps["transformers+logits_to_keep"], 2),
            "bpb": {k: round(v, 6) for k, v in value.items()},
            "bpb_gap": round(abs(value["gptlab"] - value["transformers"]), 6), "peak_gpu_gib": peaks}


def _batch_size_of(model, device) -> int:
    """The window batch `score_tokens(batch_size=None)` picks for this model here (bpb.py's own rule)."""
    from gptlab.batching import rows_that_fit  # deferred: child process only
    from gptlab.evaluate import bpb as protocol  # deferred: as above

    return rows_that_fit(int(model.sequence_len) * protocol._bytes_per_position(model), device,
                         protocol.GPU_BATCH_CAP, protocol.CPU_BATCH)


def sampling(s: Shapes, device: torch.device, args) -> dict:
    sys.path.insert(0, str(BENCH))
    import generate_vs_transformers as peer  # deferred: imports transformers (this row is skipped without it)

    from gptlab.engine import Engine  # deferred: child process only

    hf, ours, dtype = _models(s, device)
    fast = Engine(ours, peer._Ids(ours.vocab_size), max_rows=10**6, stop_ids=[],
                  decode="auto" if device.type == "cuda" else "static")
    eager = Engine(ours, peer._Ids(ours.vocab_size), max_rows=10**6, stop_ids=[], decode="eager")
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(0, ours.vocab_size, (s.prompts, s.prompt_len), generator=g).tolist()
    opts = SimpleNamespace(device=str(device), new_tokens=s.new_tokens, samples=s.samples)
    greedy_hf = peer.run_hf(hf, prompts, opts, greedy_tokens=8).tolist()
    greedy = [c.tokens for c in peer.run_ours(fast, prompts, opts, greedy_tokens=8)]
    runs = {"transformers": lambda: peer.run_hf(hf, prompts, opts),
            "gptlab": lambda: peer.run_ours(fast, prompts, opts),
            "gptlab (eager decode)": lambda: peer.run_ours(eager, prompts, opts)}
    rows = s.prompts * s.samples
    best, peaks = {k: float("inf") for k in runs}, {}
    for rep in range(s.gen_repeats + 1):                    # round 0 warms up (and captures the graph)
        for name, fn in runs.items():
            reset_peak(device)
            dt, out = timed(fn, device)
            peaks[name] = peak_gib(device)
            n = out.shape[0] * out.shape[1] if torch.is_tensor(out) else sum(len(c.tokens) for c in out)
            if n != rows * s.new_tokens:
                raise RuntimeError(f"{name} generated {n} tokens, expected {rows * s.new_tokens}")
            if rep:
                best[name] = min(best[name], dt)
    tps = {k: round(rows * s.new_tokens / v) for k, v in best.items()}
    return {"rows": rows, "prompt_len": s.prompt_len, "new_tokens": s.new_tokens, "dtype": str(dtype)[6:],
            "decode": fast.decode, "notes": fast.notes, "tokens_per_s": tps,
            "ratio": round(tps["gptlab"] / tps["transformers"], 2),
            "greedy_parity": f"{sum(a == b for a, b in zip(greedy_hf, greedy))}/{len(greedy)} prompts, 8 tokens",
            "peak_gpu_gib": peaks}
