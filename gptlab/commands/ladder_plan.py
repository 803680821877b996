"""A ladder's plan: its config -> one Rung per axis value, with exact parameter counts, tokens, steps and FLOPs.

    gptlab ladder ladder-demo --out runs/ladder          # gptlab/commands/ladder.py trains and evaluates the plan
    python -m pytest tests/test_ladder.py

Pure: nothing is trained or written. Parameters are counted on a model built on the `meta` device (shapes
only, no memory), so the count is the trained model's `num_params()` by construction; FLOPs per token are the
model's own `flops_per_token()` (6 per non-embedding weight plus the attention term), the number training
reports MFU with. The budget ([ladder] in gptlab/config.py) gives each rung its tokens: tokens_per_param x
non-embedding parameters, or flops / FLOPs per token; steps = ceil(tokens / train.total_batch_tokens), so a
rung trains on at least its budget. Each rung saves `ladder.checkpoints` evenly spaced checkpoints (the final
one included) and evaluates val bpb at each: save_every = eval_every = ceil(steps / checkpoints). Warmup is
capped at a tenth of a rung's steps so that the smallest rung does not spend its run warming up.

The rungs share one tokenizer, the first rung's (RUN_DIR/tokenizer/tokenizer.json, trained by its run), so
their bpb differ by the model only; unless the axis changes the tokenizer (model.vocab_size, tokenizer.*), in
which case each rung trains its own.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gptlab.config import Config, ladder_axes, validate
from gptlab.errors import GptlabError
from gptlab.models.gpt import GPT, GPTConfig


@dataclass
class Rung:
    """One size of the ladder: its run (name = run directory's name), the axis value and the training it gets."""
    ladder: str
    name: str
    position: int               # 0 = smallest value
    axis: str
    value: int | float
    config: Config              # the recipe with the axis value, steps, save/eval cadence and shared tokenizer set
    run_dir: Path
    params: int                 # all parameters (GPT.num_params)
    non_embedding_params: int   # less the token embedding table: what the budget counts
    flops_per_token: float      # GPT.flops_per_token
    tokens: int                 # trained: steps x train.total_batch_tokens (>= the budget's tokens)
    steps: int
    budget: dict = field(default_factory=dict)

    @property
    def flops(self) -> float:
        return self.flops_per_token * self.tokens

    def row(self) -> dict:
        """The store's ladder_rungs row (Store.put_ladder_rung)."""
        return dict(ladder=self.ladder, run=self.name, axis=self.axis, value=self.value, position=self.position,
                    params=self.params, non_embedding_params=self.non_embedding_params, tokens=self.tokens,
                    flops=self.flops, budget=self.budget)


def count_params(cfg: Config) -> tuple[int, int, float]:
    """(parameters, non-embedding parameters, training FLOPs per token) of the config's model, built on meta."""
    with torch.device("meta"):
        model = GPT(GPTConfig.from_model_config(cfg.model))
    total = model.num_params()
    return total, total - model.transformer.wte.weight.numel(), float(model.flops_per_token())


def format_value(v: int | float) -> str:
    """4 -> '4', 0.02 -> '0.02': the value as it appears in a run name."""
    return str(v) if isinstance(v, int) else f"{v:g}"


def rung_name(ladder: str, axis: str, value: int | float) -> str:
    """ladder-demo, model.depth, 4 -> 'ladder-demo-depth4'."""
    return f"{ladder}-{axis.split('.', 1)[1]}{format_value(value)}"


def with_value(cfg: Config, axis: str, value) -> Config:
    """A deep copy of `cfg` with `axis` (`table.key`) set to `value`."""
    out = copy.deepcopy(cfg)
    table, key = axis.split(".")
    setattr(getattr(out, table), key, value)
    return out


def shares_tokenizer(cfg: Config) -> bool:
    """Whether the rungs can share the first rung's tokenizer: the axis does not change what it is made of."""
    return not cfg.tokenizer.path and cfg.ladder.axis != "model.vocab_size" and not cfg.ladder.axis.startswith(
        "tokenizer.")


def plan_ladder(cfg: Config, out: str | Path) -> list[Rung]:
    """The rungs of `cfg`'s [ladder] under the folder `out`, smallest first; a rung whose config is invalid or
    whose budget is under one step is a one-line GptlabError naming it."""
    lc, out = cfg.ladder, Path(out)
    kind = ladder_axes()[lc.axis]
    budget = lc.budget
    rungs, names = [], set()
    shared_tok = None
    for position, raw in enumerate(lc.values):
        value = int(raw) if kind == "int" else float(raw)
        name = rung_name(cfg.name, lc.axis, value)
        if name in names:
            raise GptlabError(f"ladder.values: two rungs would both be named {name!r}; use values that differ "
                              f"more")
        names.add(name)
        rc = with_value(cfg, lc.axis, value)
        rc.name = name
        validate(rc, f"{cfg.source}: rung {name} ({lc.axis} = {format_value(value)})")
        params, non_emb, fpt = count_params(rc)
        tokens = budget["tokens_per_param"] * non_emb if "tokens_per_param" in budget else budget["flops"] / fpt
        batch = rc.train.total_batch_tokens
        if tokens < batch:
            raise GptlabError(f"rung {name}: its budget is {tokens:,.0f} tokens, less than one step of "
                              f"train.total_batch_tokens = {batch:,}; raise the budget or lower the batch")
        steps = math.ceil(tokens / batch)
        every = math.ceil(steps / lc.checkpoints)
        t = rc.train
        t.steps, t.save_every, t.eval_every = steps, every, every
        t.warmup_steps = min(t.warmup_steps, steps // 10)
        if shared_tok is not None:
            rc.tokenizer.path = str(shared_tok)
        elif shares_tokenizer(cfg):
            shared_tok = (out / name / "tokenizer" / "tokenizer.json").resolve()
        rungs.append(Rung(ladder=cfg.name, name=name, position=position, axis=lc.axis, value=value, config=rc,
                          run_dir=out / name, params=params, non_embedding_params=non_emb, flops_per_token=fpt,
                          tokens=steps * batch, steps=steps, budget=dict(budget)))
    return rungs
