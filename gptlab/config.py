"""Typed configuration: dataclasses with defaults, loaded from TOML, with named presets and --set overrides.

    gptlab train demo --set train.steps=20        # a preset name, or a path to a TOML file
    python -m pytest tests/test_config.py tests/test_fuzz_config.py

A config has four tables: [model], [tokenizer], [data] (a list of [[data.domains]]) and [train], and two
optional ones, [logging] (W&B project and entity, TensorBoard folder: gptlab/trackers.py) and [ladder] (the
sizes `gptlab ladder` trains the recipe at: gptlab/commands/ladder.py, docs/ladder.md). Every field's
type and range is checked against one table (`RULES`, in gptlab/config_rules.py), plus what no single field
can say (`validate`, here): a bad value is a one-line GptlabError naming the file and the key
(`train.log_every must be at least 1, got 0`), and unknown keys are errors too. Paths in a config are
relative to the config file; a path starting with `gptlab:` refers to a file shipped inside the package (e.g.
`gptlab:corpus/web_en.val.jsonl`); a glob (`data/py/*.parquet`) becomes its matching files, sorted, and one
that matches nothing is an error.
Presets are TOML files in gptlab/presets/ (`demo`, `d12`, ...): `gptlab train d12` finds them by name.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from gptlab.config_rules import FieldError, check_value, show_value
from gptlab.errors import GptlabError
from gptlab.textfile import parse_toml, read_text_file

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
class LoggingConfig:                    # experiment trackers (gptlab/trackers.py); empty = off
    wandb_project: str = ""
    wandb_entity: str = ""
    tensorboard_dir: str = ""           # events in <dir>/<name>/train, relative to the current folder


@dataclass
class LadderConfig:
    """[ladder]: the sizes `gptlab ladder` trains (gptlab/commands/ladder_plan.py checks and plans them)."""
    axis: str = "model.depth"           # the numeric key varied, table.key
    values: list[float] = field(default_factory=lambda: [2, 4, 6, 8])     # one rung each: >= 3, ascending
    tokens_per_param: float = 0.0       # budget: tokens per non-embedding parameter; 0: 20 unless flops is set
    flops: float = 0.0                  # budget: training FLOPs per rung; 0: unset
    checkpoints: int = 4                # evenly spaced checkpoints per rung, the final one included


@dataclass
class Config:
    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ladder: LadderConfig = field(default_factory=LadderConfig)
    source: str = ""            # where it was loaded from (not a TOML key)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d


TABLES = {"model": ModelConfig, "tokenizer": TokenizerConfig, "data": DataConfig, "train": TrainConfig,
          "logging": LoggingConfig, "ladder": LadderConfig}


def _build(cls, raw, path: str, table: str = "", label: str = "", where: str = ""):
    """Construct dataclass `cls` from a dict, refusing unknown keys, wrong types and out-of-range values by
    name: `table` picks the RULES, `label` prefixes a key in messages ("train."), `where` names the table."""
    where = where or path
    if not isinstance(raw, dict):
        raise GptlabError(f"{where}: expected a table, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise GptlabError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in raw.items():
        if cls is Config and name in TABLES:
            kwargs[name] = _build(TABLES[name], value, path, name, f"{name}.", f"{path} [{name}]")
        elif cls is DataConfig:
            if not isinstance(value, list):
                raise GptlabError(f"{where}: 'domains' must be a list of [[data.domains]] tables")
            kwargs[name] = [_build_domain(v, path, i) for i, v in enumerate(value)]
        else:
            try:
                kwargs[name] = check_value(value, str(fields[name].type), table, name, f"{label}{name}")
            except FieldError as e:
                raise GptlabError(f"{path}: {e}") from None
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise GptlabError(f"{where}: missing key {missing[0]!r}")
    return cls(**kwargs)


def _build_domain(raw, path: str, i: int) -> DomainConfig:
    name = raw.get("name") if isinstance(raw, dict) else None
    label = f"domain {name!r}: " if isinstance(name, str) and name and name.isprintable() else f"domain #{i + 1}: "
    return _build(DomainConfig, raw, path, "domain", label, f"{path} [[data.domains]] #{i + 1}")


def resolve_config_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    try:
        if p.is_file():
            return p
        preset = PRESETS_DIR / f"{name_or_path}.toml"
        if preset.is_file():
            return preset
    except (OSError, ValueError):        # a name too long for the file system, a NUL byte
        pass
    names = ", ".join(sorted(q.stem for q in PRESETS_DIR.glob("*.toml")))
    raise GptlabError(f"{show_value(str(name_or_path))}: no such config file or preset (presets: {names})")


MAX_CONFIG_BYTES = 4 * 2**20      # a config is a few KB; more is not a config


def load_config(name_or_path: str | Path, overrides: list[str] = ()) -> Config:
    """The config of a TOML file or preset with `--set` overrides applied: every value checked (RULES and
    `validate`), data paths resolved against the config's folder and globs expanded."""
    path = resolve_config_path(str(name_or_path))
    raw = parse_toml(read_text_file(path, "config file", MAX_CONFIG_BYTES), str(path))
    for item in overrides:
        apply_override(raw, item)
    raw.setdefault("name", path.stem)
    cfg = _build(Config, raw, str(path))
    cfg.source = str(path)
    for d in cfg.data.domains:
        d.train = expand_data_paths(d.train, path, f"{path}: domain {d.name!r}: train")
        d.val = expand_data_paths(d.val, path, f"{path}: domain {d.name!r}: val")
    validate(cfg, str(path))
    return cfg


def _one_line(text: str) -> str:
    return " ".join(text.split())


def apply_override(raw: dict, item: str) -> None:
    """`train.steps=200` -> raw['train']['steps'] = 200 (the value is parsed as TOML, else a string)."""
    if "=" not in item:
        raise GptlabError(f"--set {show_value(item)}: expected KEY=VALUE, e.g. train.steps=200")
    key, text = item.split("=", 1)
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except (ValueError, RecursionError):      # not TOML, or an integer of over 4,300 digits: a plain string
        value = text
    *parents, last = key.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise GptlabError(f"--set {show_value(item)}: {part!r} is not a table")
    node[last] = value


def expand_data_paths(patterns: list[str], config_path: Path, where: str) -> list[str]:
    """Data paths as absolute file names: relative to the config file's folder, `gptlab:` inside the package,
    `~` expanded; a glob (`data/py/*.parquet`, `**` too) becomes its matching files, sorted, and a glob that
    matches nothing is an error naming it."""
    out = []
    for p in patterns:
        try:
            if p.startswith("gptlab:"):
                full = PACKAGE_DIR / p.removeprefix("gptlab:")
            else:
                q = Path(p).expanduser()
                full = q if q.is_absolute() else (config_path.parent / q).resolve()
            if not any(c in p for c in "*?[") or full.is_file():
                out.append(str(full))
                continue
            found = sorted(f for f in glob.glob(str(full), recursive=True) if Path(f).is_file())
        except (OSError, RuntimeError, ValueError) as e:      # ~unknown_user, a symlink loop
            raise GptlabError(f"{where} path {show_value(p)}: {_one_line(str(e))}") from None
        if not found:
            raise GptlabError(f"{where} pattern {show_value(p)} matches no file (in {full.parent})")
        out.extend(found)
    return out


def validate(cfg: Config, where: str) -> None:
    """What no single field can say: sizes that must divide, the data mixture as a whole."""
    m, t = cfg.model, cfg.train
    if m.width % m.head_dim:
        raise GptlabError(f"{where}: model width {m.width} must be a positive multiple of head_dim {m.head_dim}")
    if m.n_kv_head and m.n_head % m.n_kv_head:
        raise GptlabError(f"{where}: n_head {m.n_head} is not a multiple of n_kv_head {m.n_kv_head}")
    if not cfg.tokenizer.path and m.vocab_size < 258:
        raise GptlabError(f"{where}: model.vocab_size must be at least 258 to train a byte-level BPE "
                          f"(tokenizer.path is empty), got {m.vocab_size}")
    per_step = t.device_batch_size * m.sequence_len
    if t.total_batch_tokens % per_step:
        raise GptlabError(f"{where}: train.total_batch_tokens {t.total_batch_tokens} must be a multiple of "
                          f"device_batch_size x sequence_len = {per_step}")
    if not cfg.data.domains:
        raise GptlabError(f"{where}: no [[data.domains]]: nothing to train on")
    seen = set()
    for d in cfg.data.domains:
        if d.name in seen:
            raise GptlabError(f"{where}: domain {d.name!r} is listed twice")
        seen.add(d.name)
        if not d.train and d.weight > 0:
            raise GptlabError(f"{where}: domain {d.name!r} has no train sources")
    if not any(d.weight > 0 and d.train for d in cfg.data.domains):
        raise GptlabError(f"{where}: every domain's weight is 0: nothing to draw training batches from")
