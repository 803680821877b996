"""The training rows of bench/gpu_acceptance.py: gptlab's d12 training step and nanochat's own, same shape.

    python bench/gpu_acceptance.py --row train_gptlab          (one row alone; the parent runs each so)
    python bench/gpu_acceptance.py --row train_nanochat --nanochat-src .peers/nanochat

gptlab: the preset d12 (12 layers, width 768, 6 heads of 128, vocabulary 32,768, sequence 2,048, 32 rows per
micro-batch, one micro-batch per step) through `Trainer.train_step` itself — the real loader (BatchSampler
over a random token stream, pinned non-blocking copies), bf16 autocast, the model compiled, backward, gradient
clipping, Muon + AdamW — on a Trainer assembled without a run directory. tokens/s over `train_steps` steps
after `train_warmup` (the first compiles); MFU = the model's FLOPs per token (6 x non-embedding parameters +
attention's 12 x layers x width x sequence) x tokens/s / the card's bf16 peak (989 TFLOP/s for H100 SXM/H200).

nanochat (its source at commit 92d63d4e, MIT): the loop body of its scripts/base_train.py at the same shape —
GPT built on meta, `init_weights`, `setup_optimizer` (MuonAdamW, its fused steps compiled), the model compiled
with dynamic=False, `loss = model(x, y); loss.backward(); optimizer.step(); model.zero_grad()`, the loss read
back each step, batches drawn like ours (random tokens, pinned, non-blocking). `window_pattern` defaults to
"L" (full attention, ours too): without its `kernels` download (Flash Attention 3) nanochat falls back to
SDPA, where its own warning says sliding windows are slow. Its MFU uses its own `estimate_flops`.
In --smoke (CPU) nanochat runs with TorchDynamo disabled (the parent sets TORCHDYNAMO_DISABLE=1): its
optimizer's fused steps are compiled with inductor, which costs minutes of C++ compilation on a CPU.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from acceptance.common import Shapes, peak_flops, peak_gib, reset_peak, sdpa_kernel, timed

RANDOM_TOKENS = 4_000_000       # the stream random batches are drawn from


def _smoke_overrides(s: Shapes) -> list[str]:
    return [f"model.depth={s.depth}", f"model.n_embd={s.width}", f"model.head_dim={s.width // s.heads}",
            f"model.vocab_size={s.vocab}", f"model.sequence_len={s.seq}", f"train.device_batch_size={s.rows}",
            f"train.total_batch_tokens={s.rows * s.seq}"]


def train_gptlab(s: Shapes, device: torch.device, args) -> dict:
    from gptlab.config import load_config  # deferred: the child process of this row only
    from gptlab.data import BatchSampler, DomainData  # deferred: as above
    from gptlab.distributed import Dist  # deferred: as above
    from gptlab.models.gpt import GPT, GPTConfig  # deferred: as above
    from gptlab.optim import build_optimizers  # deferred: as above
    from gptlab.train import Trainer  # deferred: as above

    cfg = load_config("d12", [] if s.depth == 12 and s.seq == 2048 else _smoke_overrides(s))
    tc, m = cfg.train, cfg.model
    assert tc.total_batch_tokens == tc.device_batch_size * m.sequence_len == s.rows * s.seq
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_model_config(m)).to(device)
    model.init_weights(0)
    stream = np.random.default_rng(0).integers(0, m.vocab_size, RANDOM_TOKENS if s.seq > 64 else 20_000)
    sampler = BatchSampler([DomainData("random", 1.0, stream, None)], m.sequence_len, tc.device_batch_size, 1, 0)
    bf16 = device.type == "cuda"
    trainer = Trainer(cfg=cfg, run_dir=Path("."), dist=Dist(0, 1, 0, device), tokenizer=None, tok_file=Path("."),
                      domains=[], sampler=sampler, model=model,
                      train_model=torch.compile(model, backend=s.compile_backend),
                      optimizers=build_optimizers(model, tc), token_bytes=None,
                      autocast=torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16), start_step=0,
                      checkpoints=[], run_config={}, metrics_path=Path("."), flops_per_token=model.flops_per_token(),
                      peak_flops=peak_flops(device))
    reset_peak(device)
    warm, _ = timed(lambda: [trainer.train_step(i) for i in range(s.train_warmup)], device)
    timed_steps = range(s.train_warmup, s.train_warmup + s.train_steps)
    dt, losses = timed(lambda: [trainer.train_step(i)[0] for i in timed_steps], device)
    tps = s.train_steps * s.rows * s.seq / dt
    peak = peak_flops(device)
    return {"tokens_per_s": round(tps), "mfu": round(model.flops_per_token() * tps / peak, 4) if peak else None,
            "flops_per_token": model.flops_per_token(), "params": model.num_params(),
            "peak_flops": peak, "warmup_s": round(warm, 1), "step_s": round(dt / s.train_steps, 4),
            "last_loss": round(losses[-1], 4), "attention": f"SDPA, {sdpa_kernel(device, m.n_head, m.head_dim, s.seq)}",
            "precision": "bf16 autocast, fp32 weights" if bf16 else "fp32",
            "compiled": f"torch.compile (backend {s.compile_backend})", "peak_gpu_gib": peak_gib(device)}


def find_nanochat(given: str | None) -> Path | None:
    """The folder holding nanochat's `nanochat/` package: --nanochat-src, else the usual places."""
    root = Path(__file__).resolve().parents[2]
    for p in ([given] if given else []) + [os.environ.get("GPTLAB_NANOCHAT_SRC"), root / ".peers" / "nanochat",
                                           root / "shared" / "peers" / "src" / "nanochat",
                                           root.parent / "shared" / "peers" / "src" / "nanochat",
                                           "/work/shared/peers/src/nanochat"]:
        if p and (Path(p) / "nanochat" / "gpt.py").is_file():
            return Path(p).resolve()
    return None


def train_nanochat(s: Shapes, device: torch.device, args) -> dict:
    src = find_nanochat(args.nanochat_src)
    if src is None:
        return {"status": "skipped: nanochat source not found (pass --nanochat-src; tools/gpu_run.sh prepare "
                          "copies it to .peers/nanochat)"}
    os.environ.setdefault("NANOCHAT_BASE_DIR", tempfile.mkdtemp(prefix="nanochat-"))
    sys.path.insert(0, str(src))
    from nanochat import flash_attention  # deferred: nanochat's own source, found at run time
    from nanochat.common import COMPUTE_DTYPE  # deferred: as above
    from nanochat.gpt import GPT, GPTConfig  # deferred: as above

    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")       # what its compute_init does on CUDA
    config = GPTConfig(sequence_len=s.seq, vocab_size=s.vocab, n_layer=s.depth, n_head=s.heads, n_kv_head=s.heads,
                       n_embd=s.width, window_pattern=args.nanochat_window)
    with torch.device("meta"):
        model = GPT(config)
    model.to_empty(device=device)
    model.init_weights()
    optimizer = model.setup_optimizer()
    compiled = torch.compile(model, dynamic=False)
    rng = np.random.default_rng(0)
    pin = device.type == "cuda"

    def batch():
        a = rng.integers(0, s.vocab, (s.rows, s.seq + 1))
        x, y = (torch.from_numpy(np.ascontiguousarray(t)) for t in (a[:, :-1], a[:, 1:]))   # as its loader
        if pin:
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x, y

    def step():
        x, y = batch()
        loss = compiled(x, y)
        loss.backward()
        optimizer.step()
        compiled.zero_grad(set_to_none=True)
        return loss.item()

    reset_peak(device)
    warm, _ = timed(lambda: [step() for _ in range(s.train_warmup)], device)
    dt, losses = timed(lambda: [step() for _ in range(s.train_steps)], device)
    tps = s.train_steps * s.rows * s.seq / dt
    peak = peak_flops(device)
    flops = model.estimate_flops()
    fa3 = getattr(flash_attention, "USE_FA3", False)
    return {"tokens_per_s": round(tps), "mfu": round(flops * tps / peak, 4) if peak else None,
            "flops_per_token": flops, "params": sum(p.numel() for p in model.parameters()), "peak_flops": peak,
            "warmup_s": round(warm, 1), "step_s": round(dt / s.train_steps, 4), "last_loss": round(losses[-1], 4),
            "attention": "Flash Attention 3 (kernels)" if fa3 else
                         f"SDPA fallback, {sdpa_kernel(device, s.heads, s.width // s.heads, s.seq)}",
            "window_pattern": args.nanochat_window, "precision": f"compute {COMPUTE_DTYPE}, fp32 master weights",
            "compiled": "torch.compile(dynamic=False)" + ("" if os.environ.get("TORCHDYNAMO_DISABLE") != "1"
                                                           else " disabled (TORCHDYNAMO_DISABLE=1, --smoke)"),
            "source": str(src), "peak_gpu_gib": peak_gib(device)}
