"""Optimizers as nanochat sets them up: Muon for the transformer's matrices, AdamW for embedding and head.

    gptlab train demo                       (build_optimizers and set_schedule drive every step)
    python -m pytest tests/test_train.py    (training and resume runs exercise it)

Muon (MomentUm Orthogonalized by Newton-schulz) replaces each 2-D weight's update by the nearest
semi-orthogonal matrix to its Nesterov momentum, found with five iterations of a quintic Newton-Schulz map
whose coefficients (3.4445, -4.7750, 2.0315) push every singular value towards 1 quickly. The update is scaled
by sqrt(max(1, rows/cols)) so tall and wide matrices move alike. Embedding and output head are not matrices
in that sense (one row per token) and keep AdamW; their learning rates scale as (width/768)^-0.5.
The schedule's arithmetic (`lr_multiplier`) lives in gptlab/schedule.py, torch-free, so the report can rebuild
the rates a run used.
"""

from __future__ import annotations

import torch

from gptlab.schedule import lr_multiplier

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately U V^T for g = U S V^T (in bfloat16 on CUDA, float32 elsewhere)."""
    a, b, c = NS_COEFFS
    x = g.to(torch.bfloat16 if g.is_cuda else torch.float32)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        s = x @ x.mT
        x = a * x + (b * s + c * s @ s) @ x
    return (x.mT if tall else x).to(g.dtype)


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr=0.02, momentum=0.95, weight_decay=0.0, ns_steps=5):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - beta)
                update = orthogonalize(p.grad.lerp(buf, beta), group["ns_steps"])   # Nesterov
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-group["lr"] * max(1.0, p.size(-2) / p.size(-1)) ** 0.5)


def build_optimizers(model, tc) -> list[torch.optim.Optimizer]:
    """[AdamW(embedding, head), Muon(matrices)]; every group remembers its base lr as 'initial_lr'."""
    scale = (model.config.n_embd / 768) ** -0.5
    matrices = [p for p in model.transformer.h.parameters() if p.ndim == 2]
    others = [p for p in model.transformer.h.parameters() if p.ndim != 2]
    adam_groups = [
        dict(params=[model.transformer.wte.weight], lr=tc.embedding_lr * scale),
        dict(params=[model.lm_head.weight], lr=tc.unembedding_lr * scale)]
    if others:
        adam_groups.append(dict(params=others, lr=tc.embedding_lr * scale))
    adam = torch.optim.AdamW(adam_groups, betas=tuple(tc.adam_betas), eps=1e-10, weight_decay=0.0)
    muon = Muon(matrices, lr=tc.matrix_lr, momentum=0.95, weight_decay=tc.weight_decay)
    opts = [adam, muon]
    for opt in opts:
        for g in opt.param_groups:
            g["initial_lr"] = g["lr"]
    return opts


def muon_momentum(step: int) -> float:
    """Momentum warms from 0.85 to 0.95 over the first 300 steps (as nanochat does)."""
    frac = min(step / 300, 1.0)
    return (1 - frac) * 0.85 + frac * 0.95


def set_schedule(opts, step: int, tc) -> float:
    m = lr_multiplier(step, tc)
    for opt in opts:
        for g in opt.param_groups:
            g["lr"] = g["initial_lr"] * m
            if isinstance(opt, Muon):
                g["momentum"] = muon_momentum(step)
    return m
