"""A ladder's plan: its config -> one Rung per axis value, with exact parameter counts, tokens, steps and FLOPs.

    gptlab ladder ladder-demo --out runs/ladder          # gptlab/commands/ladder.py trains and evaluates the plan
    python -m pytest tests/test_ladder.py

Pure: nothing is trained or written. [ladder] (gptlab/config.py types each field) is checked here, where a
ladder is run (`gptlab train` ignores the table): the axis is a numeric `table.key` of [model], [tokenizer] or
[train] other than those the budget sets (train.steps, save_every, eval_every); at least 3 values (a fit needs
them), distinct, ascending, each valid for that key (its Rule; whole numbers for an integer key); one budget.

The budget counts non-embedding parameters: the total less the token embedding table (the output head stays:
it is a matmul every token pays for). That is the count FLOPs per token scale with (6 per parameter,
GPT.flops_per_token), so tokens_per_param and flops agree on what a parameter is (Kaplan et al. counted
non-embedding parameters too; Chinchilla's 20 per parameter counted the total, so at small sizes the same ratio
here means fewer tokens than Chinchilla's). At tiny sizes the embedding table (vocab x width) dominates the
total against 12 x width^2 per layer, and a total count would give every rung nearly the same tokens: the
ladder would vary the model but hardly its training.

Parameters are counted on a model built on the `meta` device (shapes only, no memory), so the count is the
trained model's `num_params()` by construction; FLOPs per token are the model's own `flops_per_token()` (6 per
non-embedding weight plus the attention term), the number training reports MFU with. A rung's tokens are
tokens_per_param x non-embedding parameters, or flops / FLOPs per token; steps = ceil(tokens /
train.total_batch_tokens), so a rung trains on at least its budget (the store records steps x batch). Each rung
saves `ladder.checkpoints` evenly spaced checkpoints (the final one included) and evaluates val bpb at each:
save_every = eval_every = ceil(steps / checkpoints). Warmup is capped at a tenth of a rung's steps so that the
smallest rung does not spend its run warming up.

The rungs share one tokenizer, the first rung's (RUN_DIR/tokenizer/tokenizer.json, trained by its run), so
their bpb differ by the model only; unless the axis changes the tokenizer (model.vocab_size, tokenizer.*), in
which case each rung trains its own.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gptlab.config import TABLES, Config, validate
from gptlab.config_rules import check_value
from gptlab.errors import GptlabError
from gptlab.models.gpt import GPT, GPTConfig

LADDER_TABLES = ("model", "tokenizer", "train")         # the tables whose numeric keys a ladder may vary
SET_BY_BUDGET = ("train.steps", "train.save_every", "train.eval_every")
CHINCHILLA = 20.0                                        # tokens per parameter when no budget is given


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

    @property
    def final_dir(self) -> Path:
        """The checkpoint folder of the rung's last step."""
        return self.run_dir / "checkpoints" / f"step_{self.steps:06d}"

    def row(self) -> dict:
        """The store's ladder_rungs row (Store.put_ladder_rung)."""
        return dict(ladder=self.ladder, run=self.name, axis=self.axis, value=self.value, position=self.position,
                    params=self.params, non_embedding_params=self.non_embedding_params, tokens=self.tokens,
                    flops=self.flops, budget=self.budget)


def ladder_axes() -> dict[str, str]:
    """The keys a ladder may vary, `table.key` -> "int" or "float"."""
    return {f"{t}.{f.name}": str(f.type) for t in LADDER_TABLES for f in dataclasses.fields(TABLES[t])
            if str(f.type) in ("int", "float") and f"{t}.{f.name}" not in SET_BY_BUDGET}


def budget_of(cfg: Config) -> dict:
    """{"flops": F} or {"tokens_per_param": R}: the budget each rung gets, as the store records it."""
    lc = cfg.ladder
    return {"flops": lc.flops} if lc.flops else {"tokens_per_param": lc.tokens_per_param or CHINCHILLA}


def _number(v: float) -> int | float:
    return int(v) if float(v).is_integer() else v


def validate_ladder(cfg: Config) -> None:
    """[ladder] as the module docstring says, or a one-line GptlabError naming the config file and the key."""
    lc, axes, where = cfg.ladder, ladder_axes(), cfg.source
    if lc.axis not in axes:
        table, _, key = lc.axis.partition(".")
        known = table in TABLES and key in {f.name for f in dataclasses.fields(TABLES[table])}
        why = ("is set by each rung's budget" if lc.axis in SET_BY_BUDGET else "is not numeric" if known
               else "is no config key")
        raise GptlabError(f"{where}: ladder.axis {lc.axis!r} {why} (valid: {', '.join(axes)})")
    if len(lc.values) < 3:
        raise GptlabError(f"{where}: a ladder needs at least 3 rungs for a fit; ladder.values has {len(lc.values)}")
    table, key = lc.axis.split(".")
    for i, v in enumerate(lc.values):
        if axes[lc.axis] == "int" and not float(v).is_integer():
            raise GptlabError(f"{where}: ladder.values[{i}] must be an integer for {lc.axis}, got {v}")
        check_value(_number(v), axes[lc.axis], table, key, f"{where}: ladder.values[{i}] ({lc.axis})")
        if i and v == lc.values[i - 1]:
            raise GptlabError(f"{where}: ladder.values lists {_number(v)} twice; each rung needs its own value")
        if i and v < lc.values[i - 1]:
            raise GptlabError(f"{where}: ladder.values must be ascending (smallest rung first), got "
                              f"{_number(lc.values[i - 1])} before {_number(v)}")
    if lc.flops and lc.tokens_per_param:
        raise GptlabError(f"{where}: [ladder] sets both tokens_per_param and flops; give one budget")


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
    validate_ladder(cfg)
    lc, out = cfg.ladder, Path(out)
    kind = ladder_axes()[lc.axis]
    budget = budget_of(cfg)
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
