"""What a training run starts from: its run directory (refused without --resume when it holds checkpoints,
locked), its tokenizer, and on --resume the newest whole checkpoint; then the commit of run.json and
metrics.jsonl once everything is checked. gptlab/train.py's `Trainer.setup` calls these before step one.

    gptlab train demo --out runs/demo --resume             # continue from the latest complete checkpoint
    python -m pytest tests/test_faults_train.py tests/test_faults_train_kill.py tests/test_train.py

A damaged checkpoint is set aside (checkpoints/.damaged-step_N) and the run resumes from the one before, one
warning line each; another model shape or tokenizer is one line naming what differs. The file formats
(checkpoint folders, metrics.jsonl, the lock) are gptlab/checkpoints/gptlab_run.py's."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch

from gptlab.checkpoints import gptlab_run
from gptlab.config import Config
from gptlab.data import iter_training_text, require_writable, write_whole
from gptlab.distributed import Dist
from gptlab.errors import GptlabError
from gptlab.models.gpt import GPTConfig
from gptlab.tokenizer import load_tokenizer, made_from_config, made_from_differs, train_bpe


def warn(msg: str) -> None:
    """One line on stderr for something the run recovered from (a torn metrics line, a damaged checkpoint)."""
    print(f"gptlab: warning: {msg}", file=sys.stderr, flush=True)


def prepare_run_dir(run_dir: Path, resume: bool, is_writer: bool):
    """Refuse to overwrite a run without --resume; make the folder; lock it (the returned file holds the lock)."""
    existing = gptlab_run.list_step_dirs(run_dir / "checkpoints")
    if existing and not resume:
        raise GptlabError(f"{run_dir}: already holds {len(existing)} checkpoint(s); pass --resume to continue "
                          f"it or --out to start a new run")
    if not is_writer:
        return None
    require_writable(run_dir, "the run")
    lock = gptlab_run.lock_run_dir(run_dir)
    if lock is None:
        warn(f"{run_dir}: not locked (the file system has no flock): make sure no other training writes here")
    return lock


def get_tokenizer(cfg: Config, run_dir: Path, dist: Dist, keep: bool = False):
    """The config's tokenizer, or the run's own: RUN_DIR/tokenizer, trained by rank 0 on the run's corpora
    unless the one there was made from the same inputs (made_from.json). `keep` (a resume with checkpoints):
    the run's tokenizer stays whatever its inputs, since the checkpoints were trained with it."""
    path = Path(cfg.tokenizer.path) if cfg.tokenizer.path else run_dir / "tokenizer" / "tokenizer.json"
    if path.is_dir():
        path = path / "tokenizer.json"
    if cfg.tokenizer.path:
        if not path.is_file():
            raise GptlabError(f"{path}: tokenizer not found (tokenizer.path in {cfg.source})")
    elif dist.is_writer:
        made_from = made_from_config(cfg)
        differs = made_from_differs(path.parent, made_from) if path.is_file() else None
        if differs and keep:
            if not differs.startswith("no record"):
                warn(f"{path}: kept for the run's checkpoints, though made from other inputs ({differs})")
        elif differs is None or differs:
            if differs:
                warn(f"{path}: made from other inputs ({differs}); training a new one")
            names = ", ".join(repr(d.name) for d in cfg.data.domains if d.train)
            train_bpe(iter_training_text(cfg.data, cfg.tokenizer.train_chars), cfg.model.vocab_size, path.parent,
                      made_from, source=f"the train sources of {names} in {cfg.source}")
    dist.barrier()
    tok = load_tokenizer(path)
    if tok.vocab_size > cfg.model.vocab_size:
        raise GptlabError(f"{path}: tokenizer has {tok.vocab_size} ids but model.vocab_size is "
                          f"{cfg.model.vocab_size}: the vocabularies do not match")
    return tok, path


SHAPE_KEYS = {"n_layer": "model.depth", "n_embd": "model.n_embd", "n_head": "model.head_dim",
              "n_kv_head": "model.n_kv_head", "vocab_size": "model.vocab_size", "sequence_len": "model.sequence_len",
              "softcap": "model.softcap", "rope_base": "model.rope_base"}


def check_same_shape(existing: list[Path], gcfg: GPTConfig) -> None:
    """--resume with another [model] than the run's newest readable checkpoint: one line naming the keys."""
    for d in reversed(existing):
        try:
            have = gptlab_run.model_config_of(d)
        except GptlabError:
            continue                    # damaged: `restore_checkpoint` says so, or falls back past it
        diff = [f"{k} {have.get(k)} -> {v} ({SHAPE_KEYS.get(k, k)})" for k, v in vars(gcfg).items()
                if have.get(k) != v]
        if diff:
            raise GptlabError(f"{d}: trained with another model shape: {', '.join(diff)}; resume with the run's "
                              f"[model] settings, or start a new run with --out")
        return


def restore_checkpoint(existing: list[Path], model, optimizers, tokenizer, tok_file, device):
    """Load the newest whole checkpoint into model and optimizers: (its step, the checkpoints up to it, the
    damaged newer ones as (folder, reason)). Every checkpoint damaged: one line naming them."""
    damaged = []
    for i in range(len(existing) - 1, -1, -1):
        d = existing[i]
        try:
            weights, state, meta = gptlab_run.read_resume_state(d, device)
        except GptlabError as e:
            damaged.append((d, str(e)))
            continue
        if meta.get("tokenizer_hash") != tokenizer.identity():
            raise GptlabError(f"{d}: trained with another tokenizer than {tok_file}")
        try:
            if len(state["optimizers"]) != len(optimizers):
                raise ValueError(f"{len(state['optimizers'])} optimizers, not {len(optimizers)}")
            model.load_state_dict(weights, strict=True)
            for opt, sd in zip(optimizers, state["optimizers"]):
                opt.load_state_dict(sd)
            torch.set_rng_state(state["torch_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            damaged.append((d, f"{d}: damaged (does not fit the model: {(str(e).splitlines() or [''])[0][:100]})"))
            continue
        return meta["step"], existing[: i + 1], damaged
    raise GptlabError(f"{existing[0].parent}: no whole checkpoint to resume from: "
                      + "; ".join(reason for _, reason in damaged))


def commit_run(run_dir: Path, run_config: dict, metrics_path: Path, rows: list[dict], torn: str, start_step: int,
               checkpoints: list[Path], damaged: list) -> None:
    """The run can proceed: set damaged checkpoints aside, write run.json, and cut metrics.jsonl back to the
    step we restart from (the lines after it are recomputed), each whole (temporary file, rename)."""
    for d, reason in damaged:
        aside = d.with_name(f".damaged-{d.name}")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(d, aside)
        warn(f"{reason}; resuming from {checkpoints[-1].name} (the damaged checkpoint is kept as "
             f"checkpoints/{aside.name})")
    if torn and start_step:
        warn(f"{metrics_path}: {torn}")
    write_whole(run_dir / "run.json", json.dumps(run_config, indent=1, default=str))
    if metrics_path.exists():
        write_whole(metrics_path, "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= start_step))
