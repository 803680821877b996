"""Training throughput of a preset: tokens/s, achieved FLOP/s and (on CUDA) MFU.

    python bench/train_throughput.py --preset demo                       # CPU
    python bench/train_throughput.py --preset d12 --device cuda --compile   # GPU, bf16 autocast

Times `--steps` optimizer steps (after `--warmup` untimed ones) of the real training step — forward, backward,
Muon + AdamW — on random token batches of the preset's shape. MFU = 6N+attention FLOPs per token x tokens/s /
the device's peak bf16 dense FLOP/s (H100/H200 SXM: 989 TFLOP/s); --device defaults to CUDA when present.
"""

import argparse
import time

import torch

from gptlab.config import load_config
from gptlab.devices import pick_device
from gptlab.errors import GptlabError
from gptlab.models.gpt import GPT, GPTConfig
from gptlab.optim import build_optimizers
from gptlab.train import PEAK_FLOPS


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
    ap.add_argument("--batch", type=int, help="rows per forward (default: the preset's device_batch_size)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    try:
        dev = pick_device(a.device)
    except GptlabError as e:
        ap.error(str(e))
    cfg = load_config(a.preset)
    rows, T = a.batch or cfg.train.device_batch_size, cfg.model.sequence_len
    model = GPT(GPTConfig.from_model_config(cfg.model)).to(dev)
    model.init_weights(0)
    opts = build_optimizers(model, cfg.train)
    step_model = torch.compile(model) if a.compile else model
    bf16 = dev.type == "cuda"
    x = torch.randint(0, cfg.model.vocab_size, (rows, T), device=dev)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = step_model(x, targets=x)
        loss.backward()
        for o in opts:
            o.step()
        model.zero_grad(set_to_none=True)

    for _ in range(a.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    tps = a.steps * rows * T / dt
    flops = model.flops_per_token() * tps
    print(f"preset {a.preset}: {model.num_params() / 1e6:.1f}M params, {rows}x{T} tokens per step, "
          f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}), "
          f"{'bf16 autocast' if bf16 else 'fp32'}{', compiled' if a.compile else ''}")
    print(f"tokens/s {tps:,.0f}   achieved {flops / 1e12:.3f} TFLOP/s")
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
        if peak:
            print(f"MFU {100 * flops / peak:.1f}% of {peak / 1e12:.0f} TFLOP/s")


if __name__ == "__main__":
    main()
