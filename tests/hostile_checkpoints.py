"""Genuine small checkpoints of every family with chosen config fields replaced, and runs under an address-space
limit: the builders of tests/test_loaders_hostile.py, tests/test_memory_bound.py and tests/test_fuzz_loaders.py.

    python -m pytest tests/test_loaders_hostile.py tests/test_memory_bound.py tests/test_fuzz_loaders.py

The builders (`hf_folder`, `gptlab_step`, `nanogpt_ckpt`, `nanochat_ckpt`, `llmc_bin`) copy a peer checkpoint from
tests/fixtures/peers and replace the fields asked for (`DELETE` removes one). Cases that allocated gigabytes
before their fix run in a subprocess under an address-space limit (`limited_run`, `sample_in_child`), so that a
regression fails the test instead of the machine.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from gptlab.models.gpt import GPT, GPTConfig

PEERS = Path(__file__).parent / "fixtures" / "peers"
HF_SRC = PEERS / "hf_gpt2" / "trained_200steps"
NANOGPT_SRC = PEERS / "nanogpt" / "out-pystdlib-char" / "ckpt.pt"
NANOCHAT_BASE = PEERS / "nanochat" / "base_dir"
LLMC_SRC = PEERS / "llmc" / "gpt2_tiny_bf16.bin"
DELETE = object()           # an override value that removes the key


def _update(d: dict, overrides: dict) -> dict:
    for k, v in overrides.items():
        if v is DELETE:
            d.pop(k, None)
        else:
            d[k] = v
    return d


# ------------------------------------------------------------------ builders: one small genuine checkpoint each

def hf_folder(where: Path, config=None, **overrides) -> Path:
    """The peers' trained HF GPT-2 folder, config.json fields replaced (or the whole of it, with `config`)."""
    d = Path(where) / "hf"
    shutil.copytree(HF_SRC, d)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(_update(cfg, overrides) if config is None else config))
    return d


def gptlab_step(where: Path, model=None, meta=None, *, arch=None, seed=0, **overrides) -> Path:
    """A gptlab checkpoint folder (random weights of gptlab's GPT of `arch`, default 1 layer 64 wide, with the
    HF peers' tokenizer), config.json's "model" fields replaced (or the whole "model" value, with `model`)."""
    cfg = GPTConfig(**{"n_layer": 1, "n_embd": 64, "n_head": 2, "n_kv_head": 2, "vocab_size": 512,
                       "sequence_len": 64, **(arch or {})})
    torch.manual_seed(seed)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in GPT(cfg).state_dict().items()}
    state = {k: torch.randn(s) * 0.02 for k, s in shapes.items()}
    d = Path(where) / "run" / "checkpoints" / "step_000001"
    d.mkdir(parents=True)
    save_file(state, str(d / "model.safetensors"))
    m = _update(dict(vars(cfg)), overrides) if model is None else model
    (d / "config.json").write_text(json.dumps({"model": m, "run": {}}))
    (d / "meta.json").write_text(json.dumps({"step": 1, "tokens_seen": 64} if meta is None else meta))
    shutil.copy(HF_SRC / "tokenizer.json", d / "tokenizer.json")
    return d


def nanogpt_ckpt(where: Path, **overrides) -> Path:
    """The peers' nanoGPT ckpt.pt (meta.pkl beside it), model_args fields replaced."""
    out = Path(where) / "out"
    out.mkdir(parents=True)
    ck = torch.load(NANOGPT_SRC, map_location="cpu", weights_only=True)
    _update(ck["model_args"], overrides)
    torch.save(ck, out / "ckpt.pt")
    shutil.copy(PEERS / "nanogpt" / "data" / "pystdlib_char" / "meta.pkl", out / "meta.pkl")
    return out / "ckpt.pt"


def nanochat_ckpt(where: Path, model_config=None, **overrides) -> Path:
    """The peers' nanochat d2 checkpoint (its base dir), meta_000060.json's model_config fields replaced (or
    the whole model_config, with `model_config`)."""
    base = Path(where) / "base"
    shutil.copytree(NANOCHAT_BASE, base, ignore=shutil.ignore_patterns("d2_bf16"))
    meta = base / "base_checkpoints" / "d2" / "meta_000060.json"
    m = json.loads(meta.read_text())
    m["model_config"] = _update(m["model_config"], overrides) if model_config is None else model_config
    meta.write_text(json.dumps(m))
    return base / "base_checkpoints" / "d2" / "model_000060.pt"


LLMC_FIELDS = ("magic", "version", "max_seq_len", "vocab_size", "n_layer", "n_head", "n_embd", "padded_vocab_size")


def llmc_bin(where: Path, **overrides) -> Path:
    """The peers' llm.c bf16 model (tokenizer beside it), header ints replaced."""
    d = Path(where) / "llmc"
    d.mkdir(parents=True)
    raw = bytearray(LLMC_SRC.read_bytes())
    header = torch.frombuffer(raw[:32], dtype=torch.int32).clone()
    for k, v in overrides.items():
        header[LLMC_FIELDS.index(k)] = v
    raw[:32] = header.numpy().tobytes()
    (d / "model.bin").write_bytes(bytes(raw))
    shutil.copy(PEERS / "llmc" / "tokenizer_stdlib_bpe50257.bin", d / "tokenizer.bin")
    return d / "model.bin"


# ------------------------------------------------------------------ running under an address-space limit

def baseline() -> tuple[int, int]:
    """(A0, R0): the address space and peak resident set of a fresh interpreter that has imported torch,
    transformers and gptlab's readers, measured once per session on this machine."""
    if not _BASE:
        r = subprocess.run([sys.executable, "-c", _BASELINE], capture_output=True, text=True, timeout=300,
                           env=_child_env())
        assert r.returncode == 0, r.stderr[-2000:]
        _BASE.extend(int(x) for x in r.stdout.split()[-2:])
    return _BASE[0], _BASE[1]


def address_space_limit(extra_bytes: int) -> int:
    """The baseline address space (A0) plus `extra_bytes`."""
    return baseline()[0] + extra_bytes


_BASE: list[int] = []
_BASELINE = """
import torch
try:
    import transformers, transformers.models.gpt2.modeling_gpt2, transformers.models.llama.modeling_llama
except ImportError:
    pass
import gptlab.cli, gptlab.checkpoints.hf, gptlab.checkpoints.nanochat, gptlab.engine, gptlab.commands.sample
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(status["VmPeak"].split()[0]) * 1024, int(status["VmHWM"].split()[0]) * 1024)
"""


def _child_env() -> dict:
    # one intra-op thread: each thread's stack and malloc arena is address space, and the count is per machine
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
                MALLOC_ARENA_MAX="2", HF_HUB_OFFLINE="1")


def limited_run(args: list[str], limit_bytes: int, timeout: int = 300) -> tuple[int, str, str, int]:
    """(exit status, stdout, stderr, peak RSS in bytes) of `python ARGS` under RLIMIT_AS = limit_bytes."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen([sys.executable, *args], stdout=out, stderr=err, preexec_fn=limit, env=_child_env())
        try:
            _, status, usage = os.wait4(p.pid, 0)
        except BaseException:
            p.kill()
            raise
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read(), err.read(), usage.ru_maxrss * 1024


def sample_in_child(paths: list[Path], limit_bytes: int, timeout: int = 300) -> list[dict]:
    """For each path, in one subprocess under RLIMIT_AS = limit_bytes: load its last checkpoint and sample 4
    tokens as `gptlab sample` does. One dict per path: ok, text or error (a GptlabError's line), context,
    and growth (bytes the peak resident set rose above the resident set before that load). Any other
    exception fails the child, hence the test."""
    rc, out, err, _ = limited_run(["-c", _SAMPLE_CHILD, *map(str, paths)], limit_bytes, timeout)
    assert rc == 0, f"exit {rc}: {err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


_SAMPLE_CHILD = _BASELINE.split("status =")[0] + """
import gc, json, sys
from gptlab.checkpoints import discover, load
from gptlab.engine import Engine
from gptlab.errors import GptlabError

def memory():
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(status["VmRSS"].split()[0]) * 1024, int(status["VmHWM"].split()[0]) * 1024

results = []
for path in sys.argv[1:]:
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                   # the peak resident set restarts from the current one
    start = memory()[0]
    try:                                               # what `gptlab sample PATH --last` does, on the CPU
        lm = load(discover(path)[-1])
        pieces = []
        Engine(lm.model, lm.tokenizer).stream("def ", 4, pieces.append, temperature=0.0)
        r = {"ok": True, "text": "".join(pieces), "context": lm.info.context}
        del lm
    except GptlabError as e:
        r = {"ok": False, "error": str(e)}
    r["growth"] = memory()[1] - start
    results.append(r)
print(json.dumps(results))
"""


def gptlab_cli(*args) -> list[str]:
    return ["-m", "gptlab", *map(str, args)]


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, f"exit {rc}: {err[-1500:]}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gptlab: error: "), err[-1500:]
    assert "unexpected" not in lines[0], lines[0]
    for n in needles:
        assert n in lines[0], lines[0]
