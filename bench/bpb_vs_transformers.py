"""Tokens/s of gptlab's bits-per-byte scorer against transformers on the same GPT-2 weights, text and windows.

    python bench/bpb_vs_transformers.py                        small GPT-2 (6 layers, width 384), CPU, float32
    python bench/bpb_vs_transformers.py --layers 12 --heads 12 --width 768 --context 1024 --batch 4
                                                               GPT-2 124M's shape
    python bench/bpb_vs_transformers.py --device cuda --dtype bfloat16 --layers 12 --heads 12 --width 768 \
        --context 1024 --batch 32 --max-tokens 100000

The weights: GPT-2 architecture with GPT-2's vocabulary (50,257 ids), by default a small model of the size our
users train on CPU: 6 layers, 6 heads, width 384, 512 positions (30.1M parameters, 19.3M of them the tied
embedding/head); --layers/--heads/--width/--context give any other shape, e.g. GPT-2 small's. Randomly
initialised by transformers' `GPT2LMHeadModel` with torch seed 0 (nothing can be downloaded here, and speed
does not depend on the values); gptlab's GPT2 gets the identical tensors.

The text: the peers' held-out val.txt (4 Python stdlib files = 4 documents, 50 KB), tokenized by the llm.c
peer's 50,257-id byte-level BPE, each document led by <|endoftext|> — cut to --max-tokens in total.

The work, identical for both: the windows of gptlab.evaluate.bpb (context = the model's positions, stride
half of it), batched --batch windows at a time in the same order and padding. gptlab runs its whole scorer
(`score_tokens`, window building included). transformers runs `model(input_ids).logits` on each batch and
takes cross-entropy over the scored positions: its usual per-token-loss path. For reference the same loop is
also timed with transformers' `logits_to_keep` (its own way to skip the head on context positions), which
needs a caller who knows the option. Tokenization is done once, outside the timings. Each side runs once to
warm up, then --repeats times, alternating; the best time of each is reported (the machine may be shared).
Findings from past runs: docs/design_log.md (2026-12, models).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "tests" / "fixtures" / "peers"
sys.path.insert(0, str(ROOT))        # the gptlab of this checkout, installed or not

from gptlab.checkpoints.bpe_files import read_llmc_tokenizer  # noqa: E402
from gptlab.evaluate.bpb import _batches, pack_pieces, score_tokens, windows  # noqa: E402
from gptlab.models.gpt2 import GPT2, config_from_hf, from_hf_state_dict  # noqa: E402


def build(args):
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=args.layers, n_head=args.heads, n_embd=args.width, vocab_size=50257,
                     n_positions=args.context)
    hf = GPT2LMHeadModel(cfg).eval()
    ours = GPT2.from_state_dict(config_from_hf(cfg), from_hf_state_dict(hf.state_dict(), config_from_hf(cfg)))
    n = sum(p.numel() for p in hf.parameters())
    dtype = getattr(torch, args.dtype)
    return hf.to(args.device, dtype), ours, f"GPT-2 {args.layers}L/{args.heads}H/{args.width}C, " \
        f"{args.context} positions, vocab 50,257, {n / 1e6:.1f}M parameters, random (torch seed 0)"


def documents(tok, max_tokens):
    text = (PEERS / "text" / "val.txt").read_text()
    spans = json.loads((PEERS / "text" / "manifest.json").read_text())["val"]
    seqs, total = [], 0
    for s in spans:
        ids = [tok.bos_id] + tok.encode(text[s["start"]:s["end"]])
        ids = ids[:max_tokens - total + 1]
        seqs.append(ids)
        total += len(ids) - 1
        if total >= max_tokens:
            break
    return seqs


def batches(seqs, context, stride, batch):
    """The pieces and batches gptlab's scorer forms (same windows, same order, same padding)."""
    pieces = [(i, ids[a:b + 1], f) for i, ids in enumerate(seqs) for a, b, f in windows(len(ids), context, stride)]
    return list(_batches(pieces, batch))


def run_hf(hf, plan, token_bytes, device, keep: bool):
    nats, nbytes = 0.0, 0
    with torch.inference_mode():
        for batch in plan:
            x, y, first = pack_pieces(batch)              # the same windows and targets gptlab scores
            width = x.shape[1]
            x, y = x.to(device), y[:, first:].to(device)
            if keep:
                logits = hf(input_ids=x, logits_to_keep=width - first).logits
            else:
                logits = hf(input_ids=x).logits[:, first:]
            nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-1,
                                  reduction="none")
            nats += nll.double().sum().item()
            nbytes += int(token_bytes[y.clamp(min=0).cpu()][y.cpu() >= 0].sum())
    return nats / (math.log(2) * nbytes), nbytes


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--width", type=int, default=384)
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8, help="windows per forward pass")
    ap.add_argument("--max-tokens", type=int, default=8192, help="tokens of val.txt to score (it has ~11.7K)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf, ours, which = build(args)
    tok = read_llmc_tokenizer(PEERS / "llmc" / "tokenizer_stdlib_bpe50257.bin")
    token_bytes = torch.as_tensor(tok.token_bytes(), dtype=torch.long)
    seqs = documents(tok, args.max_tokens)
    stride = args.context // 2
    plan = batches(seqs, args.context, stride, args.batch)
    n_tokens = sum(len(s) - 1 for s in seqs)
    print(f"weights: {which}; {args.device} {args.dtype}, {torch.get_num_threads()} threads")
    print(f"work: {len(seqs)} documents, {n_tokens:,} scored tokens, {sum(map(len, plan))} windows of <= "
          f"{args.context} (stride {stride}), {args.batch} per batch")

    def ours_run():
        r = score_tokens(ours, seqs, tok.token_bytes(), batch_size=args.batch, device=args.device,
                         dtype=getattr(torch, args.dtype))
        return r.bpb, r.bytes

    runs = {"gptlab": ours_run,
            "transformers": lambda: run_hf(hf, plan, token_bytes, args.device, keep=False),
            "transformers+logits_to_keep": lambda: run_hf(hf, plan, token_bytes, args.device, keep=True)}
    best, bpb = {k: float("inf") for k in runs}, {}
    for rep in range(args.repeats + 1):                     # the first round warms up and is not counted
        for name, fn in runs.items():
            sync(args.device)
            t0 = time.perf_counter()
            bpb[name] = fn()
            sync(args.device)
            if rep:
                best[name] = min(best[name], time.perf_counter() - t0)
    for name, dt in best.items():
        print(f"{name:>28}: {n_tokens / dt:9,.0f} tokens/s  ({dt:.2f} s, best of {args.repeats})  "
              f"bpb {bpb[name][0]:.6f} over {bpb[name][1]:,} bytes")
    print(f"ratio gptlab / transformers: {best['transformers'] / best['gptlab']:.2f}x "
          f"(vs transformers with logits_to_keep: {best['transformers+logits_to_keep'] / best['gptlab']:.2f}x); "
          f"bpb difference {abs(bpb['gptlab'][0] - bpb['transformers'][0]):.2e}")


if __name__ == "__main__":
    main()
