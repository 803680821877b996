"""gptlab's own run directories: write checkpoints atomically, find them, load them.

    gptlab models runs/demo          (lists every checkpoint of the run)
    python -m pytest tests/test_train.py tests/test_eval.py

Layout of a run directory:
    run.json                      the resolved training config, tokens per step, gptlab version
    metrics.jsonl                 one line per logged step (train loss, lr, tokens/s ...) and per evaluation
    tokenizer/tokenizer.json
    checkpoints/step_000500/      model.safetensors, config.json (architecture + run config), meta.json
                                  (step, tokens seen, val bpb per domain, train loss, tokenizer hash, data
                                  identity, gptlab version), tokenizer.json, trainer.pt (optimizer + RNG state)
A checkpoint is written into checkpoints/.tmp-step_NNNNNN and renamed when complete, so a folder named
step_NNNNNN is always whole; leftovers of a crash (.tmp-*) are ignored and cleaned on the next save.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gptlab.checkpoints import CheckpointRef, LoadedModel, ModelInfo, file_hash
from gptlab.errors import GptlabError
from gptlab.models.gpt import GPT, GPTConfig
from gptlab.tokenizer import load_tokenizer

WEIGHTS, CONFIG, META, TRAINER, TOKENIZER = "model.safetensors", "config.json", "meta.json", "trainer.pt", \
    "tokenizer.json"
METRICS = "metrics.jsonl"


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def _is_step_dir(p: Path) -> bool:
    return p.is_dir() and p.name.startswith("step_") and (p / WEIGHTS).is_file() and (p / META).is_file()


def list_step_dirs(ckpt_root: Path) -> list[Path]:
    if not ckpt_root.is_dir():
        return []
    return sorted((p for p in ckpt_root.iterdir() if _is_step_dir(p)), key=lambda p: p.name)


def run_dir_of(step_dir: Path) -> Path:
    return step_dir.parent.parent


def detect(path: Path) -> list[CheckpointRef]:
    path = Path(path)
    if path.is_file() and path.name == WEIGHTS and _is_step_dir(path.parent):
        dirs = [path.parent]
    elif _is_step_dir(path):
        dirs = [path]
    elif path.is_dir() and path.name == "checkpoints":
        dirs = list_step_dirs(path)
    elif path.is_dir() and (path / "checkpoints").is_dir():
        dirs = list_step_dirs(path / "checkpoints")
    else:
        return []
    refs = []
    for d in dirs:
        meta = _read_json(d / META)
        refs.append(CheckpointRef("gptlab_run", d, meta.get("step"), run_dir_of(d).resolve().name,
                                  meta.get("tokens_seen")))
    return refs


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GptlabError(f"{path}: unreadable checkpoint metadata ({e})") from None


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (none when the run has not logged yet)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def load(ref: CheckpointRef, device: str | torch.device = "cpu") -> LoadedModel:
    d = Path(ref.path)
    cfg_json = _read_json(d / CONFIG)
    meta = _read_json(d / META)
    try:
        gcfg = GPTConfig(**cfg_json["model"])
    except (KeyError, TypeError) as e:
        raise GptlabError(f"{d / CONFIG}: not a gptlab model config ({e})") from None
    try:
        state = load_file(str(d / WEIGHTS), device=str(device))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise GptlabError(f"{d / WEIGHTS}: corrupt or truncated weights ({str(e).splitlines()[0]})") from None
    model = GPT(gcfg).to(device)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise GptlabError(f"{d / WEIGHTS}: weights do not match config.json ({str(e).splitlines()[1].strip()})") \
            from None
    tok_path = d / TOKENIZER if (d / TOKENIZER).is_file() else run_dir_of(d) / "tokenizer" / TOKENIZER
    tokenizer = load_tokenizer(tok_path)
    if meta.get("tokenizer_hash") and tokenizer.identity() != meta["tokenizer_hash"]:
        raise GptlabError(f"{tok_path}: tokenizer differs from the one this checkpoint was trained with")
    info = ModelInfo(
        format="gptlab_run", path=str(d), run=ref.run, step=meta.get("step"), family="gptlab",
        params=model.num_params(), vocab_size=gcfg.vocab_size, context=gcfg.sequence_len,
        tokens_seen=meta.get("tokens_seen"), weights_hash=file_hash(d / WEIGHTS),
        tokenizer_hash=tokenizer.identity(),
        config=dict(cfg_json["model"], n_params=model.num_params()), meta=meta)
    return LoadedModel(model, tokenizer, info)


def save_checkpoint(run_dir: Path, step: int, model, optimizers, meta: dict, run_config: dict,
                    tokenizer_file: Path) -> Path:
    """Write checkpoints/step_NNNNNN atomically: temporary folder, fsync, rename."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{final.name}"
    tmp.mkdir()
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / WEIGHTS), metadata={"format": "gptlab", "step": str(step)})
    cfg = model.config
    (tmp / CONFIG).write_text(json.dumps({"model": vars(cfg).copy(), "run": run_config}, indent=1, default=str))
    (tmp / META).write_text(json.dumps(meta, indent=1, default=str))
    shutil.copy(tokenizer_file, tmp / TOKENIZER)
    torch.save({"optimizers": [o.state_dict() for o in optimizers], "step": step,
                "torch_rng": torch.get_rng_state()}, tmp / TRAINER)
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():              # re-saving the same step (after a resume): replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def load_trainer_state(step_dir: Path, model, optimizers, device) -> dict:
    """Restore weights and optimizer state for --resume (weights_only: nothing is unpickled as code)."""
    model.load_state_dict(load_file(str(step_dir / WEIGHTS), device=str(device)), strict=False)
    try:
        state = torch.load(step_dir / TRAINER, map_location=device, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt files
        raise GptlabError(f"{step_dir / TRAINER}: unreadable trainer state ({str(e).splitlines()[0]})") from None
    for opt, sd in zip(optimizers, state["optimizers"]):
        opt.load_state_dict(sd)
    torch.set_rng_state(state["torch_rng"])
    return _read_json(step_dir / META)
