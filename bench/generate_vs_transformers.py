"""Tokens/s of gptlab's sampling engine against transformers' `generate`, same GPT-2 weights and work.

    python bench/generate_vs_transformers.py                          GPT-2 124M shape, CPU, float32
    python bench/generate_vs_transformers.py --device cuda --dtype bfloat16 --prompts 32   (256 rows: eval on GPU)
    python bench/generate_vs_transformers.py --weights tests/fixtures/peers/hf_gpt2/trained_200steps

The weights: GPT-2 small's configuration (12 layers, 12 heads, width 768, vocabulary 50,257, 1,024
positions), randomly initialised by transformers' `GPT2LMHeadModel` with torch seed 0 — nothing can be
downloaded here, and speed does not depend on the values — or any local transformers GPT-2 folder given
with --weights. gptlab's GPT2 gets the identical tensors (`from_hf_state_dict`); greedy tokens of both are
compared first, so the two really compute the same model.

The work, identical for both: `--prompts` distinct prompts of `--prompt-len` random token ids, each
sampled `--samples` times (batch = prompts x samples rows), `--new-tokens` tokens per row at temperature
0.8, no top-k/top-p, no early stop. transformers: `generate(do_sample=True, num_return_sequences=samples,
min_new_tokens=max_new_tokens)`; gptlab: `Engine.run_batch`. Each side runs once to warm up, then
`--repeats` times, alternating; the best time of each is reported (the machine may be shared).

The default is `gptlab eval`'s workload on a CPU: 8 samples of each prompt, batches of 64 rows (its
`--batch-rows` default on CPU), here 8 prompts x 8 samples. `--prompts 4` (32 rows) is a smaller batch.
Findings from past runs (where the time goes, on CPU and GPU): docs/design_log.md (2026-12, models).
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from gptlab.engine import Engine
from gptlab.models.gpt2 import GPT2, config_from_hf, from_hf_state_dict


def build(args):
    if args.weights:
        hf = GPT2LMHeadModel.from_pretrained(args.weights, local_files_only=True)
        which = args.weights
    else:
        torch.manual_seed(0)
        hf = GPT2LMHeadModel(GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024))
        which = "GPT-2 124M configuration, random weights (torch seed 0)"
    dtype = getattr(torch, args.dtype)
    hf = hf.to(args.device, dtype).eval()
    ours = GPT2(config_from_hf(hf.config))
    ours.load_state_dict(from_hf_state_dict(hf.state_dict(), ours.config))
    ours = ours.to(args.device, dtype).eval()
    return hf, ours, which


class _Ids:
    """The engine only needs a BOS id and a vocabulary size: the benchmark feeds token ids directly."""

    def __init__(self, vocab):
        self.vocab_size, self.bos_id = vocab, None


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_hf(hf, prompts, args, greedy_tokens=None):
    ids = torch.tensor(prompts, device=args.device)
    kw = dict(max_new_tokens=greedy_tokens or args.new_tokens, pad_token_id=0, eos_token_id=None)
    if greedy_tokens:
        kw.update(do_sample=False)
    else:
        kw.update(do_sample=True, temperature=0.8, top_k=0, top_p=1.0, num_return_sequences=args.samples,
                  min_new_tokens=args.new_tokens)
    with torch.inference_mode():
        return hf.generate(ids, attention_mask=torch.ones_like(ids), **kw)[:, ids.shape[1]:]


def run_ours(engine, prompts, args, greedy_tokens=None):
    if greedy_tokens:
        rows, temps, n = prompts, [0.0] * len(prompts), greedy_tokens
    else:
        rows = [p for p in prompts for _ in range(args.samples)]
        temps, n = [0.8] * len(rows), args.new_tokens
    return engine.run_batch(rows, temps, list(range(len(rows))), n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--weights", help="a local transformers GPT-2 folder (default: GPT-2 124M shape, random)")
    ap.add_argument("--prompts", type=int, default=8, help="distinct prompts (default 8: 64 rows, eval's CPU batch)")
    ap.add_argument("--samples", type=int, default=8, help="samples per prompt (rows = prompts x samples)")
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf, ours, which = build(args)
    engine = Engine(ours, _Ids(ours.vocab_size), max_rows=10**6, stop_ids=[])
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(0, ours.vocab_size, (args.prompts, args.prompt_len), generator=g).tolist()

    a = run_hf(hf, prompts, args, greedy_tokens=8).tolist()
    b = [c.tokens for c in run_ours(engine, prompts, args, greedy_tokens=8)]
    same = sum(x == y for x, y in zip(a, b))
    rows = args.prompts * args.samples
    print(f"weights: {which}; {args.device} {args.dtype}, {torch.get_num_threads()} threads")
    print(f"greedy parity (8 tokens): {same}/{len(a)} prompts identical")
    print(f"work: {args.prompts} prompts x {args.samples} samples = {rows} rows, prompt {args.prompt_len} tokens, "
          f"{args.new_tokens} new tokens each, temperature 0.8")

    best = {"transformers": float("inf"), "gptlab": float("inf")}
    for rep in range(args.repeats + 1):                   # the first round warms up and is not counted
        for name, fn in (("transformers", lambda: run_hf(hf, prompts, args)),
                         ("gptlab", lambda: run_ours(engine, prompts, args))):
            sync(args.device)
            t0 = time.perf_counter()
            out = fn()
            sync(args.device)
            dt = time.perf_counter() - t0
            n = out.shape[0] * out.shape[1] if torch.is_tensor(out) else sum(len(c.tokens) for c in out)
            assert n == rows * args.new_tokens, f"{name} generated {n} tokens, expected {rows * args.new_tokens}"
            if rep:
                best[name] = min(best[name], dt)
    tok = rows * args.new_tokens
    for name, dt in best.items():
        print(f"{name:>12}: {tok / dt:10,.0f} tokens/s  ({dt:.2f} s for {tok:,} tokens, best of {args.repeats})")
    print(f"ratio gptlab / transformers: {best['transformers'] / best['gptlab']:.2f}x")


if __name__ == "__main__":
    main()
