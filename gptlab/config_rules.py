"""What each config field accepts, and the check of one value against it: the `RULES` table ((table, key) ->
`Rule`: a range, an exclusive bound, choices, or what a text names) and `check_value`, which gives the value as
the field's type or a one-line error naming the key (`train.log_every must be at least 1, got 0`). gptlab/config.py
builds every table through it; gptlab/commands/ladder_plan.py checks each rung's value of the ladder's axis.

    gptlab train demo --set train.log_every=0          # the one-line error
    python -m pytest tests/test_config.py tests/test_fuzz_config.py
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gptlab.errors import GptlabError


@dataclass(frozen=True)
class Rule:
    """What one field accepts beyond its type: an inclusive range [lo, hi], an exclusive bound (above, below),
    a set of choices, or for text what it names ("name": a run or domain name, "path": a file, "label": a
    printable name for another tool)."""
    lo: float | None = None
    hi: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple = ()
    text: str = ""
    even: bool = False


# Every field of every table, in one place: (table, key) -> Rule. tests/test_config.py checks none is missing.
RULES: dict[tuple[str, str], Rule] = {
    ("", "name"): Rule(text="name"),
    ("model", "depth"): Rule(lo=1, hi=1024),
    ("model", "n_embd"): Rule(lo=0, hi=1 << 16),
    ("model", "head_dim"): Rule(lo=2, hi=1 << 16, even=True),       # rotary embeddings turn pairs of dims
    ("model", "n_kv_head"): Rule(lo=0, hi=1 << 16),
    ("model", "vocab_size"): Rule(lo=2, hi=2**32 - 1),              # token ids are stored as uint32 at most
    ("model", "sequence_len"): Rule(lo=1, hi=1 << 24),
    ("model", "softcap"): Rule(above=0),                            # logits = softcap * tanh(logits / softcap)
    ("model", "rope_base"): Rule(above=0),
    ("tokenizer", "path"): Rule(text="path"),
    ("tokenizer", "train_chars"): Rule(lo=1),
    ("domain", "name"): Rule(text="name"),
    ("domain", "train"): Rule(text="path"),
    ("domain", "val"): Rule(text="path"),
    ("domain", "weight"): Rule(lo=0),
    ("domain", "group"): Rule(),
    ("train", "steps"): Rule(lo=1),
    ("train", "total_batch_tokens"): Rule(lo=1),
    ("train", "device_batch_size"): Rule(lo=1),
    ("train", "warmup_steps"): Rule(lo=0),
    ("train", "warmdown_frac"): Rule(lo=0, hi=1),
    ("train", "final_lr_frac"): Rule(lo=0, hi=1),
    ("train", "matrix_lr"): Rule(lo=0),
    ("train", "embedding_lr"): Rule(lo=0),
    ("train", "unembedding_lr"): Rule(lo=0),
    ("train", "weight_decay"): Rule(lo=0),
    ("train", "adam_betas"): Rule(lo=0, below=1),
    ("train", "grad_clip"): Rule(lo=0),
    ("train", "eval_every"): Rule(lo=1),
    ("train", "eval_tokens"): Rule(lo=0),
    ("train", "save_every"): Rule(lo=1),
    ("train", "log_every"): Rule(lo=1),
    ("train", "seed"): Rule(lo=0),
    ("train", "dtype"): Rule(choices=("auto", "float32", "bfloat16")),
    ("train", "compile"): Rule(),
    ("train", "threads"): Rule(lo=0, hi=1024),                      # 0: torch's default
    ("logging", "wandb_project"): Rule(text="label"),
    ("logging", "wandb_entity"): Rule(text="label"),
    ("logging", "tensorboard_dir"): Rule(text="path"),
    ("ladder", "axis"): Rule(text="label"),         # a numeric key; it and the values: commands/ladder_plan.py
    ("ladder", "values"): Rule(),
    ("ladder", "tokens_per_param"): Rule(lo=0),
    ("ladder", "flops"): Rule(lo=0),
    ("ladder", "checkpoints"): Rule(lo=1, hi=1000),
}


def show_value(value) -> str:
    """A value for a one-line message: its repr (newlines escaped), cut to 60 characters."""
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."



class FieldError(GptlabError):
    """A bad value, before the file name is put in front of it."""


def check_value(value, type_name: str, table: str, key: str, label: str):
    """`value` as the type of field `type_name` with the rule of (table, key), or a GptlabError naming `label`."""
    return _check(value, type_name, RULES[table, key], label)


def _check(value, type_name: str, rule: Rule, key: str):
    """`value` as the field's type (int, float, str, bool, list[str], tuple[float, float]) within `rule`."""
    if type_name.startswith("list["):           # list[str], list[float]
        item, kind = type_name[5:-1], "strings" if type_name == "list[str]" else "numbers"
        if not isinstance(value, list):
            raise FieldError(f"{key} must be a list of {kind}, got {show_value(value)}")
        return [_check(v, item, rule, f"{key}[{i}]") for i, v in enumerate(value)]
    if type_name.startswith("tuple"):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise FieldError(f"{key} must be a list of two numbers, got {show_value(value)}")
        return tuple(_check(v, "float", rule, f"{key}[{i}]") for i, v in enumerate(value))
    if type_name == "bool":
        if not isinstance(value, bool):
            raise FieldError(f"{key} must be true or false, got {show_value(value)}")
        return value
    if type_name == "str":
        if not isinstance(value, str):
            raise FieldError(f"{key} must be a string, got {show_value(value)}")
        return _check_text(value, rule, key)
    if type_name == "int":
        if isinstance(value, bool):
            raise FieldError(f"{key} must be int, got {show_value(value)}")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise FieldError(f"{key} must be an integer, got {show_value(value)}")
    elif type_name == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldError(f"{key} must be a number, got {show_value(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise FieldError(f"{key} must be a finite number, got {show_value(value)}")
    return _check_range(value, rule, key)


def _check_range(value, rule: Rule, key: str):
    if rule.lo is not None and value < rule.lo:
        raise FieldError(f"{key} must be at least {rule.lo}, got {show_value(value)}")
    if rule.hi is not None and value > rule.hi:
        raise FieldError(f"{key} must be at most {rule.hi}, got {show_value(value)}")
    if rule.above is not None and not value > rule.above:
        raise FieldError(f"{key} must be above {rule.above}, got {show_value(value)}")
    if rule.below is not None and not value < rule.below:
        raise FieldError(f"{key} must be below {rule.below}, got {show_value(value)}")
    if rule.even and value % 2:
        raise FieldError(f"{key} must be even, got {show_value(value)}")
    return value


def _check_text(value: str, rule: Rule, key: str) -> str:
    if rule.choices and value not in rule.choices:
        raise FieldError(f"{key} must be {', '.join(rule.choices[:-1])} or {rule.choices[-1]}, got {show_value(value)}")
    if rule.text and "\0" in value:
        raise FieldError(f"{key} must not contain a NUL character, got {show_value(value)}")
    if rule.text == "name":
        if not value:
            raise FieldError(f"{key} must not be empty")
        if value in (".", "..") or any(c in value for c in "/\\") or not value.isprintable():
            raise FieldError(f"{key} must not contain '/', '\\' or control characters, nor be '.' or '..', "
                              f"got {show_value(value)}")
    if rule.text == "label" and not value.isprintable():
        raise FieldError(f"{key} must not contain control characters, got {show_value(value)}")
    if rule.text == "path" and key.startswith("domain") and not value:
        raise FieldError(f"{key} must not be empty (a corpus file or glob)")
    return value
