"""Property-based fuzzing of the loaders' metadata: whatever a checkpoint's config files say, loading it ends in
a model that runs or in one GptlabError line; never another exception, never a big allocation.

    python -m pytest tests/test_fuzz_loaders.py

Generated contents (random ints including 0, negatives and huge ones, floats with nan and inf, wrong types,
missing and unknown keys, nested junk) replace the fields of genuine small checkpoints of each family: gptlab's
config.json and meta.json, a Hugging Face config.json (model_type included), nanochat's meta_N.json, nanoGPT's
model_args and llm.c's header ints. Each is loaded through gptlab.checkpoints (discover, then load) and, when it
loads, run on two tokens. The process's address space is capped (RLIMIT_AS, 1.5 GiB above what it holds)
during every example and its peak resident set is reset and read around it, so an allocation the
weights do not justify fails the property instead of the machine. Deterministic (derandomize), ~330 examples.
"""

from __future__ import annotations

import json
import resource
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hostile_checkpoints import LLMC_SRC, NANOGPT_SRC, gptlab_step, hf_folder, llmc_bin, nanochat_ckpt
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gptlab.checkpoints import discover, load
from gptlab.errors import GptlabError

MiB = 1 << 20
GROWTH_LIMIT = 256 * MiB        # the genuine checkpoints here hold < 15 MB of weights


def _settings(n: int):
    return settings(max_examples=n, derandomize=True, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------ generated JSON

SPECIAL_INTS = [0, -1, 1, 2, 3, 7, 63, 64, 65, 128, 255, 256, 2**31 - 1, 2**31, 2**53, 2**63, -2**63, 10**30]
scalars = st.one_of(st.sampled_from(SPECIAL_INTS), st.integers(-2**70, 2**70), st.floats(), st.booleans(),
                    st.none(), st.text(max_size=6))
EDGES = [0, -1, 1, 3, 2**31 - 1, 10**9, 2**40, True, "64", 64.5, None, [], {}]
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=5)


@st.composite
def mutated(draw, base: dict, extra_values: dict | None = None) -> dict:
    """`base` with up to four keys replaced by junk, by an edge value (0, -1, huge, a wrong type), by a near
    value (x2, /2, +-1, negated) or deleted, and perhaps an unknown key added; `extra_values` gives per-key
    candidates (model_type names)."""
    d = dict(base)
    for k in draw(st.lists(st.sampled_from(sorted(base)), max_size=4, unique=True)):
        how = draw(st.sampled_from(["junk", "near", "edge", "delete", "choice"]))
        if how == "delete":
            d.pop(k)
        elif how == "edge":
            d[k] = draw(st.sampled_from(EDGES))
        elif how == "near" and isinstance(base[k], int) and not isinstance(base[k], bool):
            d[k] = draw(st.sampled_from([base[k] * 2, base[k] // 2, base[k] + 1, base[k] - 1, -base[k]]))
        elif how == "choice" and extra_values and k in extra_values:
            d[k] = draw(st.sampled_from(extra_values[k]))
        else:
            d[k] = draw(values)
    if draw(st.integers(0, 9)) == 0:
        d[draw(st.text(min_size=1, max_size=6))] = draw(values)
    return d


# ------------------------------------------------------------------ the property, and its memory guard

def _status() -> dict:
    with open("/proc/self/status", encoding="ascii") as f:
        return {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in f if ln.startswith("Vm")}


@contextmanager
def capped():
    """The process's address space capped at 1.5 GiB above its current size, for one example."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _status()["VmSize"] + 1536 * MiB
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def loads_or_refuses(path: Path) -> None:
    """The property: discover + load end in a model that runs, or in one GptlabError line; the peak resident
    set meanwhile rises by less than GROWTH_LIMIT."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")                                    # VmHWM restarts from the current resident set
    start = _status()["VmRSS"]
    try:
        with capped():
            lm = load(discover(path)[0])
            with torch.no_grad():
                logits = lm.model(torch.tensor([[0, 1]]))
        assert logits.shape[:2] == (1, 2)
        event("loaded and ran")
    except GptlabError as e:
        msg = str(e)
        event("refused")
        assert msg and "\n" not in msg, msg
        assert "allocate" not in msg, f"an allocation failed under the cap: {msg}"
    growth = _status()["VmHWM"] - start
    assert growth < GROWTH_LIMIT, f"peak resident set rose {growth / MiB:.0f} MiB"


# ------------------------------------------------------------------ one genuine checkpoint per family

@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    out = {"gptlab": gptlab_step(root / "gptlab"), "nanochat": nanochat_ckpt(root / "nanochat"),
           "llmc": llmc_bin(root / "llmc")}
    if _has_transformers():
        out["hf"] = hf_folder(root / "hf")
    out["nanogpt"] = root / "nanogpt" / "ckpt.pt"
    out["nanogpt"].parent.mkdir()
    shutil.copy(NANOGPT_SRC, out["nanogpt"])
    shutil.copy(NANOGPT_SRC.parent.parent / "data" / "pystdlib_char" / "meta.pkl", out["nanogpt"].parent)
    out["bases"] = {"gptlab": json.loads((out["gptlab"] / "config.json").read_text())["model"],
                    "nanochat": json.loads(out["nanochat"].with_name("meta_000060.json").read_text())}
    if "hf" in out:
        out["bases"]["hf"] = json.loads((out["hf"] / "config.json").read_text())
    return out


def _has_transformers() -> bool:
    try:
        import transformers  # noqa: F401  # deferred: optional extra [hf]; only asks whether it is there
    except ImportError:
        return False
    return True


GPTLAB_MODEL = {"n_layer": 1, "n_embd": 64, "n_head": 2, "n_kv_head": 2, "vocab_size": 512, "sequence_len": 64,
                "softcap": 15.0, "rope_base": 10000.0}
GPTLAB_META = {"step": 1, "tokens_seen": 64, "tokenizer_hash": ""}


@_settings(90)
@given(model=mutated(GPTLAB_MODEL), meta=st.one_of(st.just(GPTLAB_META), mutated(GPTLAB_META)),
       whole=st.one_of(st.just(None), st.just(None), st.just(None), values))
def test_gptlab_config_and_meta(folders, model, meta, whole):
    d = folders["gptlab"]
    (d / "config.json").write_text(json.dumps({"model": model if whole is None else whole, "run": {}}))
    (d / "meta.json").write_text(json.dumps(meta))
    loads_or_refuses(d)


HF_MODEL_TYPES = {"model_type": ["gpt2", "llama", "gpt_neox", "opt", "xlnet", "bloom", "mistral", "qwen2"]}


@_settings(80)
@given(data=st.data())
def test_hf_config(folders, data):
    if "hf" not in folders:
        pytest.skip("transformers is not installed")
    d = folders["hf"]
    base = folders["bases"]["hf"]
    keys = {k: base[k] for k in ("model_type", "n_embd", "n_head", "n_layer", "n_positions", "vocab_size",
                                 "n_inner", "tie_word_embeddings", "layer_norm_epsilon", "activation_function",
                                 "architectures", "dtype")}
    config = {k: v for k, v in base.items() if k not in keys} | data.draw(mutated(keys, HF_MODEL_TYPES))
    if data.draw(st.booleans()):        # another architecture over GPT-2's keys: its defaults are huge models
        config["model_type"] = data.draw(st.sampled_from(HF_MODEL_TYPES["model_type"]))
    (d / "config.json").write_text(json.dumps(config))
    loads_or_refuses(d)


@_settings(80)
@given(data=st.data())
def test_nanochat_meta(folders, data):
    path = folders["nanochat"]
    base = folders["bases"]["nanochat"]
    meta = dict(base, model_config=data.draw(mutated(base["model_config"])))
    meta = data.draw(mutated(meta)) if data.draw(st.integers(0, 3)) == 0 else meta
    path.with_name("meta_000060.json").write_text(json.dumps(meta))
    loads_or_refuses(path)


NANOGPT_ARGS = {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64, "bias": False, "vocab_size": 96,
                "dropout": 0.0}


@_settings(40)
@given(args=mutated(NANOGPT_ARGS))
def test_nanogpt_model_args(folders, args):
    ck = torch.load(NANOGPT_SRC, map_location="cpu", weights_only=True)
    ck["model_args"] = args
    torch.save(ck, folders["nanogpt"])
    loads_or_refuses(folders["nanogpt"])


@_settings(40)
@given(header=st.lists(st.one_of(st.sampled_from([0, -1, 1, 2, 3, 64, 2**31 - 1, -2**31]),
                                 st.integers(-2**31, 2**31 - 1)), min_size=6, max_size=6),
       keep=st.lists(st.booleans(), min_size=6, max_size=6))
def test_llmc_header(folders, header, keep):
    path = folders["llmc"]
    raw = bytearray(LLMC_SRC.read_bytes())
    ints = torch.frombuffer(raw[:32], dtype=torch.int32).clone()
    for i, (v, k) in enumerate(zip(header, keep)):          # fields 2..7: sizes (magic and version kept)
        if not k:
            ints[2 + i] = v
    raw[:32] = ints.numpy().tobytes()
    path.write_bytes(bytes(raw))
    loads_or_refuses(path)

