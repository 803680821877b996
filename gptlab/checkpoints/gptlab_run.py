"""gptlab's own run directories: write checkpoints atomically, find them, load them.

    gptlab models runs/demo          (lists every checkpoint of the run)
    python -m pytest tests/test_train.py tests/test_eval.py tests/test_faults_train.py

Layout of a run directory:
    run.json                      the resolved training config, tokens per step, gptlab version
    metrics.jsonl                 one line per logged step (train loss, lr, tokens/s ...) and per evaluation
    tokenizer/tokenizer.json
    checkpoints/step_000500/      model.safetensors, config.json (architecture + run config), meta.json
                                  (step, tokens seen, val bpb per domain, train loss, tokenizer hash, data
                                  identity, gptlab version), tokenizer.json, trainer.pt (optimizer + RNG state)
A checkpoint is written into checkpoints/.tmp-step_NNNNNN, fsynced and renamed when complete, so a folder named
step_NNNNNN is always whole; leftovers of a crash (.tmp-*) are ignored and cleaned on the next save. A write that
fails (a full disk) removes the temporary folder and is one line naming the file and the cause (ENOSPC).
`lock_run_dir` takes an flock on RUN_DIR/.lock for a training's lifetime (it dies with the process, kill -9 too):
a second training into the same directory is refused naming the holder. `parse_metrics` leaves out a torn last
line of metrics.jsonl (a crash mid-write). `read_resume_state` reads a checkpoint whole or names what is damaged.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gptlab.checkpoints import CheckpointRef, LoadedModel, ModelInfo, file_hash
from gptlab.checkpoints.skeleton import build_checked, check_divides, check_number, check_sizes, safetensors_shapes
from gptlab.data import write_error
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
    steps: list[Path] = []              # step folders to name when incomplete (no weights or no metadata)
    if path.is_file() and path.name == WEIGHTS and _is_step_dir(path.parent):
        dirs = [path.parent]
    elif _is_step_dir(path):
        dirs = [path]
    elif path.is_dir() and path.name.startswith("step_") and path.parent.name == "checkpoints":
        dirs, steps = [], [path]        # incomplete: named below, not taken for another format
    elif path.is_dir() and path.name == "checkpoints":
        dirs, steps = list_step_dirs(path), list(path.iterdir())
    elif path.is_dir() and (path / "checkpoints").is_dir():
        dirs, steps = list_step_dirs(path / "checkpoints"), list((path / "checkpoints").iterdir())
    else:
        return []
    refs = []
    for d in sorted(p for p in steps if p.is_dir() and p.name.startswith("step_") and p not in dirs):
        lacks = " and ".join(f for f in (WEIGHTS, META) if not (d / f).is_file())
        refs.append(CheckpointRef("gptlab_run", d, None, run_dir_of(d).resolve().name,
                                  error=f"{d}: incomplete checkpoint, no {lacks}"))
    for d in dirs:
        try:
            meta = _checkpoint_meta(d / META)
        except GptlabError as e:     # one unreadable step is an error of its own; the run's others still list
            refs.append(CheckpointRef("gptlab_run", d, None, run_dir_of(d).resolve().name, error=str(e)))
            continue
        refs.append(CheckpointRef("gptlab_run", d, meta.get("step"), run_dir_of(d).resolve().name,
                                  meta.get("tokens_seen")))
    return refs


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GptlabError(f"{path}: unreadable checkpoint metadata ({e})") from None


def _checkpoint_meta(path: Path) -> dict:
    """meta.json of a step: an object whose step and tokens_seen, when present, are non-negative integers."""
    meta = _read_json(path)
    if not isinstance(meta, dict):
        raise GptlabError(f"{path}: unreadable checkpoint metadata (expected a JSON object)")
    for k in ("step", "tokens_seen"):
        v = meta.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise GptlabError(f"{path}: {k} is {v!r}: expected a non-negative integer")
    return meta


def _model_config(cfg_json, path: Path) -> GPTConfig:
    """The architecture in config.json["model"], every size checked (skeleton.py) before anything is built."""
    m = cfg_json.get("model") if isinstance(cfg_json, dict) else None
    if not isinstance(m, dict):
        raise GptlabError(f"{path}: not a gptlab model config (no \"model\" object)")
    unknown = sorted(set(m) - set(GPTConfig.__dataclass_fields__))
    if unknown:
        raise GptlabError(f"{path}: not a gptlab model config (unknown keys {', '.join(map(repr, unknown))[:80]})")
    sizes = check_sizes(m, ("n_layer", "n_embd", "n_head", "n_kv_head", "vocab_size", "sequence_len"), path)
    check_divides(path, ("n_head", sizes["n_head"]), ("n_embd", sizes["n_embd"]))
    check_divides(path, ("n_kv_head", sizes["n_kv_head"]), ("n_head", sizes["n_head"]))
    check_divides(path, ("2 (rotary halves)", 2), ("the head size", sizes["n_embd"] // sizes["n_head"]))
    fields = GPTConfig.__dataclass_fields__
    numbers = {k: check_number(m, k, path, fields[k].default) for k in ("softcap", "rope_base")}
    return GPTConfig(**sizes, **numbers)


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (none when the run has not logged yet; a torn last line left out)."""
    return parse_metrics(Path(run_dir) / METRICS)[0]


def parse_metrics(path: Path) -> tuple[list[dict], str]:
    """(rows, note) of a metrics.jsonl: a torn last line (a crash while it was written, or a line being written
    now) is left out and described in `note`; an unreadable line before it is an error naming its number."""
    try:
        lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    except FileNotFoundError:
        return [], ""
    except OSError as e:
        raise GptlabError(f"{path}: cannot read the metrics ({e.strerror})") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or isinstance(row.get("step"), bool) or not isinstance(row.get("step"), int):
                raise ValueError("no integer step")
        except (ValueError, RecursionError):
            if not any(rest.strip() for rest in lines[n:]):
                return rows, f"ignored a torn last line (line {n}, {len(line)} characters: a crash while writing it)"
            raise GptlabError(f"{path}:{n}: not a metrics line (JSON with an integer step); remove or fix it") \
                from None
        rows.append(row)
    return rows, ""


def load(ref: CheckpointRef, device: str | torch.device = "cpu") -> LoadedModel:
    d = Path(ref.path)
    cfg_json = _read_json(d / CONFIG)
    meta = _checkpoint_meta(d / META)
    gcfg = _model_config(cfg_json, d / CONFIG)
    # the config is checked against the weights' header on the meta device before any memory is allocated
    build_checked(lambda: GPT(gcfg), safetensors_shapes([d / WEIGHTS]), weights=d / WEIGHTS, config=CONFIG,
                  n_layer=gcfg.n_layer)
    try:
        state = load_file(str(d / WEIGHTS), device=str(device))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise GptlabError(f"{d / WEIGHTS}: corrupt or truncated weights ({str(e).splitlines()[0]})") from None
    model = GPT.from_state_dict(gcfg, state)
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
    """Write checkpoints/step_NNNNNN atomically: temporary folder, fsync, rename. A failed write (ENOSPC, EIO)
    removes the temporary folder, keeps every earlier checkpoint, and raises one line naming the file."""
    root = Path(run_dir) / "checkpoints"
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{final.name}"
    current = root
    try:
        root.mkdir(parents=True, exist_ok=True)
        clean_leftovers(root)
        tmp.mkdir()
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        current = tmp / WEIGHTS
        # one metadata key: with two, their order in the header varies per process, and so would the hash
        save_file(state, str(current), metadata={"format": "gptlab"})
        cfg = model.config
        files = {CONFIG: json.dumps({"model": vars(cfg).copy(), "run": run_config}, indent=1, default=str).encode(),
                 META: json.dumps(meta, indent=1, default=str).encode(), TOKENIZER: Path(tokenizer_file).read_bytes()}
        for name, data in files.items():
            current = tmp / name
            with open_for_writing(current) as f:
                f.write(data)
        current = tmp / TRAINER
        with open_for_writing(current) as f:
            try:
                torch.save({"optimizers": [o.state_dict() for o in optimizers], "step": step,
                            "torch_rng": torch.get_rng_state()}, f)
            except RuntimeError as e:       # torch's zip writer hides the cause: the writer kept it
                raise (f.error or e) from None
        fsync_path(tmp / WEIGHTS)
        current = final
        old = root / f".old-{final.name}"
        if final.exists():              # re-saving the same step (after a resume): replace it whole
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_path(root)
        shutil.rmtree(old, ignore_errors=True)
    except (OSError, RuntimeError, SafetensorError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(current, e) from None
    return final


class open_for_writing:
    """A binary file for a checkpoint's file that remembers the OSError its write raised (torch.save reports
    its own 'enforce fail' instead), and is fsynced on close. `raw_write` is the file's write."""

    def __init__(self, path: Path):
        self.path, self.error = Path(path), None
        self._f = open(path, "wb")
        self.raw_write = self._f.write

    def write(self, data) -> int:
        try:
            return self.raw_write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self._f.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self._f.flush()
                os.fsync(self._f.fileno())
        finally:
            self._f.close()


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entry to disk (an atomic write's rename survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean_leftovers(root: Path) -> None:
    """Remove what a crash left in checkpoints/: temporary folders (.tmp-*) and, for a step re-saved after a
    resume, the previous copy (.old-*), which is put back when the crash came before its replacement's rename."""
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.name.startswith(".tmp-"):
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(".old-"):
            final = root / p.name.removeprefix(".old-")
            if final.exists():
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.replace(p, final)


def read_resume_state(step_dir: Path, device) -> tuple[dict, dict, dict]:
    """(weights, trainer state, meta) of a checkpoint for --resume, each read whole, or a GptlabError naming the
    damaged file (weights_only: nothing is unpickled as code)."""
    try:
        weights = load_file(str(step_dir / WEIGHTS), device=str(device))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise GptlabError(f"{step_dir / WEIGHTS}: damaged ({str(e).splitlines()[0][:100]})") from None
    try:
        state = torch.load(step_dir / TRAINER, map_location=device, weights_only=True)
        if not isinstance(state, dict) or not isinstance(state.get("optimizers"), list) \
                or not isinstance(state.get("torch_rng"), torch.Tensor):
            raise ValueError("not a gptlab trainer state")
    except Exception as e:  # torch raises several types for corrupt files
        raise GptlabError(f"{step_dir / TRAINER}: damaged ({(str(e).splitlines() or [''])[0][:100]})") from None
    meta = _read_json(step_dir / META)
    if not isinstance(meta, dict) or isinstance(meta.get("step"), bool) or not isinstance(meta.get("step"), int):
        raise GptlabError(f"{step_dir / META}: damaged (no integer step)")
    return weights, state, meta


def model_config_of(step_dir: Path) -> dict:
    """config.json's "model" object of a checkpoint (the architecture it was trained with)."""
    cfg = _read_json(step_dir / CONFIG)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise GptlabError(f"{step_dir / CONFIG}: damaged (no \"model\" object)")
    return cfg["model"]


LOCK = ".lock"


def lock_run_dir(run_dir: Path):
    """Take the run directory for this process: an exclusive flock on RUN_DIR/.lock, held while the returned
    file is open and released by the kernel when the process ends, however it ends. The file says who holds it
    (pid, host, start time); a second taker gets a GptlabError naming them. None where the file system has no
    flock (the run then goes on unguarded)."""
    path = Path(run_dir) / LOCK
    try:
        f = open(path, "a+")
    except OSError as e:
        raise GptlabError(f"{run_dir}: output folder is not writable ({e.strerror})") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            f.seek(0)
            h = json.loads(f.read())
            who = f"pid {h['pid']} on {h['host']}, since {h['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            who = "holder unknown"
        finally:
            f.close()
        raise GptlabError(f"{run_dir}: in use by another training ({who}); wait for it to end, or train into "
                          f"another --out") from None
    except OSError:
        f.close()
        return None
    try:                                # who holds it, for the message of the next taker (best effort)
        os.ftruncate(f.fileno(), 0)
        os.pwrite(f.fileno(), (json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                           "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}) + "\n").encode(), 0)
    except OSError:
        pass
    return f
