"""Checkpoints whose config files lie: every family's loader ends in one GptlabError line, never another
exception and never an allocation the weights do not justify (gptlab/checkpoints/skeleton.py).

    python -m pytest tests/test_loaders_hostile.py

The builders here (`hf_folder`, `gptlab_step`, `nanogpt_ckpt`, `nanochat_ckpt`, `llmc_bin`) write a genuine
small checkpoint of each family with chosen config fields replaced; tests/test_memory_bound.py and
tests/test_fuzz_loaders.py use them too. Cases that allocated gigabytes before the fix run in a subprocess
under an address-space limit (`limited_run`), so that a regression fails the test instead of the machine.
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

import pytest
import torch
from safetensors.torch import save_file

from gptlab import checkpoints
from gptlab.checkpoints import discover, load
from gptlab.errors import GptlabError
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


# ------------------------------------------------------------------ the cases that used to exhaust memory

LIMIT_EXTRA = 1 << 30       # 1 GiB above the import baseline: each case's weights are under 1 MB


def test_hf_config_claiming_another_architecture_is_one_line_not_21_gb(tmp_path):
    # model_type llama with GPT-2's keys: transformers' defaults (4096 wide, 32 layers, 6.5B parameters)
    d = hf_folder(tmp_path, model_type="llama")
    rc, _, err, rss = limited_run(gptlab_cli("sample", d, "def ", "--max-tokens", "4"),
                                  address_space_limit(LIMIT_EXTRA))
    assert_one_line_error(rc, err, "model.safetensors: weights do not match config.json",
                          "the file lacks model.embed_tokens.weight")


def test_gptlab_config_claiming_a_huge_model_is_one_line(tmp_path):
    d = gptlab_step(tmp_path, n_embd=16384, n_layer=64)
    rc, _, err, _ = limited_run(gptlab_cli("sample", d, "def ", "--max-tokens", "4"),
                                address_space_limit(LIMIT_EXTRA))
    assert_one_line_error(rc, err, "model.safetensors: weights do not match config.json",
                          "transformer.wte.weight is (512, 64) in the file, (512, 16384) by the config")


def test_absurd_layer_counts_are_refused_before_anything_is_built(tmp_path):
    pytest.importorskip("transformers")
    paths = [gptlab_step(tmp_path / "gptlab", n_layer=2**31 - 1), hf_folder(tmp_path / "hf", n_layer=10**9),
             nanogpt_ckpt(tmp_path / "nanogpt", n_layer=2**31 - 1),
             nanochat_ckpt(tmp_path / "nanochat", n_layer=2**31 - 1)]
    for path, r in zip(paths, sample_in_child(paths, address_space_limit(LIMIT_EXTRA), timeout=120)):
        assert not r["ok"] and "layers, but the file holds only" in r["error"], (path, r)


# ------------------------------------------------------------------ every family's config fields, in process

def _refused(path, *needles):
    with pytest.raises(GptlabError) as e:
        load(discover(path)[0])
    msg = str(e.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


@pytest.mark.parametrize("overrides, needles", [
    ({"n_head": 0}, ["n_head is 0: expected a positive integer"]),
    ({"n_head": 3}, ["n_embd 64 is not divisible by n_head 3"]),
    ({"n_embd": -64}, ["n_embd is -64"]),
    ({"n_layer": "6"}, ["n_layer is '6'"]),
    ({"block_size": 64.0}, ["block_size is 64.0"]),
    ({"vocab_size": True}, ["vocab_size is True"]),
    ({"n_layer": DELETE}, ["n_layer is missing"]),
    ({"vocab_size": 10**9}, ["weights do not match", "transformer.wte.weight is (96, 64) in the file"]),
    ({"block_size": 2**40}, ["block_size is 1099511627776"]),
    ({"bias": "yes"}, ["bias is 'yes'"]),
])
def test_nanogpt_model_args(overrides, needles, tmp_path):
    _refused(nanogpt_ckpt(tmp_path, **overrides), "ckpt.pt: model_args" if "weights" not in needles[0] else "",
             *needles)


@pytest.mark.parametrize("overrides, needles", [
    ({"n_head": 0}, ["model_config: n_head is 0"]),
    ({"n_kv_head": 0}, ["model_config: n_kv_head is 0"]),
    ({"n_kv_head": 3}, ["n_head 2 is not divisible by n_kv_head 3"]),
    ({"n_embd": 256}, ["weights do not match model_config"]),
    ({"vocab_size": 10**9}, ["weights do not match model_config", "transformer.wte.weight"]),
    ({"sequence_len": -1}, ["sequence_len is -1"]),
    ({"window_pattern": 5}, ["window_pattern is 5"]),
    ({"window_pattern": "SXL"}, ["window_pattern is 'SXL'"]),
    ({"n_layer": [2]}, ["n_layer is [2]"]),
])
def test_nanochat_model_config(overrides, needles, tmp_path):
    _refused(nanochat_ckpt(tmp_path, **overrides), *needles)


def test_nanochat_meta_that_is_not_an_object_is_an_error_line(tmp_path):
    path = nanochat_ckpt(tmp_path)
    path.with_name("meta_000060.json").write_text("[1, 2]")
    refs, errors = checkpoints.discover_all(tmp_path)
    assert refs == [] and len(errors) == 1 and "meta_000060.json: nanochat metadata without a model_config" \
        in errors[0]


@pytest.mark.parametrize("overrides, needles", [
    ({"n_head": 0}, ["n_head is 0"]),
    ({"n_kv_head": 0}, ["n_kv_head is 0"]),
    ({"n_head": 3}, ["n_embd 64 is not divisible by n_head 3"]),
    ({"n_head": 2, "n_kv_head": 4}, ["n_head 2 is not divisible by n_kv_head 4"]),
    ({"n_head": 64, "n_kv_head": 64}, ["the head size 1 is not divisible by 2"]),
    ({"sequence_len": 0}, ["sequence_len is 0"]),
    ({"vocab_size": "512"}, ["vocab_size is '512'"]),
    ({"n_embd": 2**40}, ["n_embd is 1099511627776"]),
    ({"softcap": 0}, ["softcap is 0"]),
    ({"rope_base": float("nan")}, ["rope_base is nan"]),
    ({"rope_base": "big"}, ["rope_base is 'big'"]),
    ({"n_layer": DELETE}, ["n_layer is missing"]),
    ({"dropout": 0.1}, ["unknown keys 'dropout'"]),
    ({"n_layer": 2}, ["the file lacks transformer.h.1.attn.c_q.weight"]),
    ({"n_embd": 128, "n_head": 2}, ["transformer.wte.weight is (512, 64) in the file, (512, 128) by the config"]),
])
def test_gptlab_model_config(overrides, needles, tmp_path):
    _refused(gptlab_step(tmp_path, **overrides), "config.json", *needles)


def test_gptlab_model_config_that_is_not_an_object(tmp_path):
    _refused(gptlab_step(tmp_path, model=[64, 2]), 'not a gptlab model config (no "model" object)')


def test_gptlab_meta_with_a_bad_step_is_an_error_line_and_the_other_steps_still_list(tmp_path):
    good = gptlab_step(tmp_path / "a")
    bad = gptlab_step(tmp_path / "b", meta={"step": "one"})
    refs, errors = checkpoints.discover_all(tmp_path)
    assert [r.path for r in refs] == [good]
    assert len(errors) == 1 and f"{bad / 'meta.json'}: step is 'one'" in errors[0]


@pytest.mark.parametrize("overrides, needles", [
    ({"n_head": 0}, ["model.safetensors: cannot build the model config.json describes (ZeroDivisionError"]),
    ({"n_head": 3}, ["model.safetensors: cannot build the model config.json describes (ValueError"]),
    ({"n_embd": "64"}, ["config.json: transformers cannot read this config"]),
    ({"n_layer": 2.5}, ["config.json: transformers cannot read this config"]),
    ({"n_layer": 300}, ["config.json claims 300 layers, but the file holds only 28 tensors"]),
    ({"n_layer": -1}, ["num_hidden_layers is -1"]),
    ({"n_layer": 1}, ["the config has no place for transformer.h.1."]),
    ({"n_positions": 10**6}, ["transformer.wpe.weight is (256, 64) in the file, (1000000, 64) by the config"]),
    ({"vocab_size": -1}, ["config.json"]),
    ({"model_type": "no_such_model"}, ["config.json: transformers cannot read this config"]),
    ({"model_type": "llama"}, ["the file lacks model.embed_tokens.weight"]),
    ({"model_type": "llama", "max_position_embeddings": 0}, ["config.json: max_position_embeddings is 0"]),
])
def test_hf_config(overrides, needles, tmp_path):
    pytest.importorskip("transformers")
    _refused(hf_folder(tmp_path, **overrides), *needles)


def test_hf_config_that_is_not_an_object(tmp_path):
    _refused(hf_folder(tmp_path, config=["gpt2"]), "config.json: expected a JSON object, found list")


@pytest.mark.parametrize("overrides, needles", [
    ({"n_head": 0}, ["implausible header"]),
    ({"n_head": 3}, ["implausible header"]),
    ({"n_layer": 2**30}, ["truncated or corrupt"]),
    ({"max_seq_len": -5}, ["implausible header"]),
    ({"vocab_size": 2**31 - 1, "padded_vocab_size": 2**31 - 1}, ["truncated or corrupt"]),
])
def test_llmc_header(overrides, needles, tmp_path):
    _refused(llmc_bin(tmp_path, **overrides), "model.bin: ", *needles)


# ------------------------------------------------------------------ a context no weights bound allocates nothing

def test_rotary_models_with_an_absurd_but_valid_context_load_and_sample(tmp_path):
    # sequence_len shapes no weight of a rotary model, only its rotary tables: built as far as they are used
    paths = [gptlab_step(tmp_path / "gptlab", sequence_len=2**31 - 1),
             nanochat_ckpt(tmp_path / "nanochat", sequence_len=2**31 - 1)]
    for path, r in zip(paths, sample_in_child(paths, address_space_limit(LIMIT_EXTRA))):
        assert r["ok"] and r["context"] == 2**31 - 1 and r["text"], (path, r)
        assert r["growth"] < 256 << 20, (path, r)


# ------------------------------------------------------------------ `gptlab models`: one line per unreadable checkpoint

def test_models_lists_the_good_and_names_each_unreadable_checkpoint(tmp_path, capsys):
    from gptlab.cli import main  # deferred: heavy (torch via the CLI's imports); keeps collection light
    gptlab_step(tmp_path / "good")
    gptlab_step(tmp_path / "badmeta", meta=["not", "an", "object"])
    bad_ckpt = tmp_path / "nanogpt" / "ckpt.pt"
    bad_ckpt.parent.mkdir()
    bad_ckpt.write_bytes(NANOGPT_SRC.read_bytes()[:200_000])                 # truncated: found, unreadable
    nanogpt_ckpt(tmp_path / "zero_heads", n_head=0)                          # found, fails to load
    emptied = gptlab_step(tmp_path / "emptied")
    (emptied / "model.safetensors").unlink()                                 # a step folder without weights
    model = nanochat_ckpt(tmp_path / "nanochat")
    shutil.copy(model, model.with_name("model_000070.pt"))                   # a step without its meta_000070.json
    assert main(["models", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out.count("gptlab_run") == 1 and out.count("nanochat") == 1
    lines = err.strip().splitlines()
    assert len(lines) == 5 and all(ln.startswith("gptlab: error: ") for ln in lines), err
    assert any("badmeta" in ln and "meta.json" in ln for ln in lines)
    assert any(str(bad_ckpt) in ln and "cannot read weights" in ln for ln in lines)
    assert any("n_head is 0" in ln for ln in lines)
    assert any(f"{emptied}: incomplete checkpoint, no model.safetensors" in ln for ln in lines)
    assert any("model_000070.pt: no meta_000070.json beside it" in ln for ln in lines)


@pytest.mark.parametrize("target", ["/dev/null", "fifo"])
def test_models_on_a_special_file_is_one_line(target, tmp_path, capsys):
    from gptlab.cli import main  # deferred: heavy (torch via the CLI's imports); keeps collection light
    if target == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
    assert main(["models", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gptlab: error: ") and len(err.splitlines()) == 1 and "unexpected" not in err, err
