"""Typed configuration: dataclasses with defaults, loaded from TOML, with named presets and --set overrides.

    gptlab train demo --set train.steps=20        # a preset name, or a path to a TOML file
    python -m pytest tests/test_train.py -k "config or preset"

A config has four tables: [model], [tokenizer], [data] (a list of [[data.domains]]) and [train]. Unknown keys
are errors that name the key and the file. Paths in a config are relative to the config file; a path starting
with `gptlab:` refers to a file shipped inside the package (e.g. `gptlab:corpus/web_en.val.jsonl`).
Presets are TOML files in gptlab/presets/ (`demo`, `d12`, ...): `gptlab train d12` finds them by name.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from gptlab.errors import GptlabError

PRESETS_DIR = Path(__file__).parent / "presets"
PACKAGE_DIR = Path(__file__).parent


@dataclass
class ModelConfig:
    """nanochat-style GPT. width = 64 x depth rounded up to a multiple of 128 unless n_embd is given."""
    depth: int = 12
    n_embd: int = 0             # 0: derived from depth
    head_dim: int = 128
    n_kv_head: int = 0          # 0: same as n_head (no grouped-query attention)
    vocab_size: int = 32768
    sequence_len: int = 2048
    softcap: float = 15.0
    rope_base: float = 10000.0

    @property
    def width(self) -> int:
        return self.n_embd or math.ceil(64 * self.depth / 128) * 128

    @property
    def n_head(self) -> int:
        return max(1, self.width // self.head_dim)


@dataclass
class TokenizerConfig:
    path: str = ""              # an existing tokenizer.json (or folder); empty: train one into the run dir
    train_chars: int = 20_000_000


@dataclass
class DomainConfig:
    name: str
    train: list[str] = field(default_factory=list)   # .txt / .jsonl (text field) / .parquet (text column)
    val: list[str] = field(default_factory=list)
    weight: float = 1.0         # mixture weight: share of training tokens drawn from this domain
    group: str = ""             # probe domain this data serves: code / general / finance / ...


@dataclass
class DataConfig:
    domains: list[DomainConfig] = field(default_factory=list)


@dataclass
class TrainConfig:
    steps: int = 1000
    total_batch_tokens: int = 524288    # tokens per optimizer step, reached by gradient accumulation
    device_batch_size: int = 32         # rows of sequence_len per forward pass
    warmup_steps: int = 0
    warmdown_frac: float = 0.2          # final fraction of steps with linear decay to final_lr_frac
    final_lr_frac: float = 0.0
    matrix_lr: float = 0.02             # Muon, for the transformer's 2-D weights
    embedding_lr: float = 0.2           # AdamW, token embedding
    unembedding_lr: float = 0.004       # AdamW, output head
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.8, 0.95)
    grad_clip: float = 1.0              # 0 disables
    eval_every: int = 250
    eval_tokens: int = 262144           # val tokens per domain at each evaluation (0: the whole val set)
    save_every: int = 1000
    log_every: int = 1
    seed: int = 0
    dtype: str = "auto"                 # auto: bfloat16 autocast on CUDA, float32 on CPU
    compile: bool = False
    threads: int = 0                    # CPU threads for torch; 0: torch's default


@dataclass
class Config:
    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    source: str = ""            # where it was loaded from (not a TOML key)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d


def _build(cls, raw: dict, where: str):
    """Construct dataclass `cls` from a dict, refusing unknown keys and wrong types by name."""
    if not isinstance(raw, dict):
        raise GptlabError(f"{where}: expected a table, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise GptlabError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in raw.items():
        f = fields[name]
        sub = {"model": ModelConfig, "tokenizer": TokenizerConfig, "data": DataConfig,
               "train": TrainConfig}.get(name) if cls is Config else None
        if sub is not None:
            kwargs[name] = _build(sub, value, f"{where} [{name}]")
        elif cls is DataConfig and name == "domains":
            if not isinstance(value, list):
                raise GptlabError(f"{where}: 'domains' must be a list of [[data.domains]] tables")
            kwargs[name] = [_build(DomainConfig, v, f"{where} domain #{i + 1}") for i, v in enumerate(value)]
        else:
            kwargs[name] = _coerce(value, f.type, f"{where}: '{name}'")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise GptlabError(f"{where}: {e}") from None


def _coerce(value, type_name, where):
    t = str(type_name)
    if t == "int" and isinstance(value, bool) or t == "bool" and not isinstance(value, bool):
        raise GptlabError(f"{where} must be {t}, got {value!r}")
    if t == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise GptlabError(f"{where} must be an integer, got {value!r}")
    elif t == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise GptlabError(f"{where} must be a number, got {value!r}")
        value = float(value)
    elif t == "str" and not isinstance(value, str):
        raise GptlabError(f"{where} must be a string, got {value!r}")
    elif t.startswith("list") and not isinstance(value, list):
        raise GptlabError(f"{where} must be a list, got {value!r}")
    elif t.startswith("tuple"):
        value = tuple(value)
    return value


def resolve_config_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    preset = PRESETS_DIR / f"{name_or_path}.toml"
    if preset.is_file():
        return preset
    names = ", ".join(sorted(q.stem for q in PRESETS_DIR.glob("*.toml")))
    raise GptlabError(f"{name_or_path}: no such config file or preset (presets: {names})")


def load_config(name_or_path: str | Path, overrides: list[str] = ()) -> Config:
    path = resolve_config_path(str(name_or_path))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise GptlabError(f"{path}: invalid TOML ({e})") from None
    except UnicodeDecodeError:
        raise GptlabError(f"{path}: not UTF-8 text") from None
    for item in overrides:
        apply_override(raw, item)
    raw.setdefault("name", path.stem)
    cfg = _build(Config, raw, str(path))
    cfg.source = str(path)
    for d in cfg.data.domains:
        d.train = [resolve_data_path(p, path) for p in d.train]
        d.val = [resolve_data_path(p, path) for p in d.val]
    validate(cfg, str(path))
    return cfg


def apply_override(raw: dict, item: str) -> None:
    """`train.steps=200` -> raw['train']['steps'] = 200 (the value is parsed as TOML, else a string)."""
    if "=" not in item:
        raise GptlabError(f"--set {item!r}: expected KEY=VALUE, e.g. train.steps=200")
    key, text = item.split("=", 1)
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    *parents, last = key.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise GptlabError(f"--set {item!r}: '{part}' is not a table")
    node[last] = value


def resolve_data_path(p: str, config_path: Path) -> str:
    if p.startswith("gptlab:"):
        return str(PACKAGE_DIR / p.removeprefix("gptlab:"))
    q = Path(p).expanduser()
    return str(q if q.is_absolute() else (config_path.parent / q).resolve())


def validate(cfg: Config, where: str) -> None:
    m, t = cfg.model, cfg.train
    if m.depth < 1 or m.width % m.head_dim:
        raise GptlabError(f"{where}: model width {m.width} must be a positive multiple of head_dim {m.head_dim}")
    if m.n_kv_head and m.n_head % m.n_kv_head:
        raise GptlabError(f"{where}: n_head {m.n_head} is not a multiple of n_kv_head {m.n_kv_head}")
    per_step = t.device_batch_size * m.sequence_len
    if t.total_batch_tokens % per_step:
        raise GptlabError(f"{where}: train.total_batch_tokens {t.total_batch_tokens} must be a multiple of "
                          f"device_batch_size x sequence_len = {per_step}")
    for name, v in (("steps", t.steps), ("eval_every", t.eval_every), ("save_every", t.save_every)):
        if v <= 0:
            raise GptlabError(f"{where}: train.{name} must be positive, got {v}")
    if not cfg.data.domains:
        raise GptlabError(f"{where}: no [[data.domains]]: nothing to train on")
    seen = set()
    for d in cfg.data.domains:
        if d.name in seen:
            raise GptlabError(f"{where}: domain '{d.name}' is listed twice")
        seen.add(d.name)
        if not d.train and d.weight > 0:
            raise GptlabError(f"{where}: domain '{d.name}' has no train sources")
        if d.weight < 0:
            raise GptlabError(f"{where}: domain '{d.name}' has a negative weight")
    if t.dtype not in ("auto", "float32", "bfloat16"):
        raise GptlabError(f"{where}: train.dtype must be auto, float32 or bfloat16, got {t.dtype!r}")
