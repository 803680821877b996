"""The memory bound, measured: loading and sampling any checkpoint, whatever its config files say, stays within
a bound set by the weight files' real sizes.

    python -m pytest tests/test_memory_bound.py

With F the bytes of the weight files a load reads and W the bytes of their tensors as float32 (F for float32
files, 2 F for bfloat16 ones; for nanoGPT's ckpt.pt, which also holds the optimizer state, W counts the model
only), a process that has imported torch, transformers and gptlab's readers (address space A0, measured here
per machine: about 0.9 GB on x86-64 with CPU torch) and then loads a checkpoint and samples from it stays
within
    address space                     <= A0 + F + 2 W + 512 MiB    (F: the files are memory-mapped while read)
    growth of the peak resident set   <= 2 W + 128 MiB
A config describing a bigger model than its weights ends in one GptlabError line (exit 2) within the same
bound: tests/test_loaders_hostile.py has a case per family and field. Every run here is a subprocess under
RLIMIT_AS = the address-space bound, so a regression fails the test (MemoryError, an allocator error, exit 1)
instead of exhausting the machine.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from hostile_checkpoints import (
    NANOCHAT_BASE,
    PEERS,
    baseline,
    gptlab_step,
    hf_folder,
    nanochat_ckpt,
    nanogpt_ckpt,
    sample_in_child,
)
from safetensors.torch import save_file

MiB = 1 << 20
SPACE_MARGIN = 512 * MiB        # threads' stacks and malloc arenas, tokenizers' pools, lazily imported modules
RSS_MARGIN = 128 * MiB          # code and data of modules imported on first use, allocator slack


def space_bound(cases) -> int:
    """The address-space bound of a child that loads each of `cases` ((path, F, W), ...) in turn."""
    return baseline()[0] + max(f + 2 * w for _, f, w in cases) + SPACE_MARGIN


def sizes(files: list[Path], bf16: bool = False) -> tuple[int, int]:
    f = sum(p.stat().st_size for p in files)
    return f, 2 * f if bf16 else f


def check_within_bound(cases, expect_ok: bool) -> list[dict]:
    results = sample_in_child([p for p, _, _ in cases], space_bound(cases))
    for (path, _, w), r in zip(cases, results):
        assert r["ok"] == expect_ok, (str(path), r)
        assert r["growth"] <= 2 * w + RSS_MARGIN, \
            f"{path}: peak RSS rose {r['growth'] / MiB:.0f} MiB > 2 x {w / MiB:.1f} + 128 MiB"
    return results


# ------------------------------------------------------------------ the peers' genuine checkpoints

PEER_CASES = [("hf_gpt2/trained_200steps", "hf_gpt2/trained_200steps/model.safetensors", False),
              ("llmc/gpt2_tiny.bin", "llmc/gpt2_tiny.bin", False),
              ("llmc/gpt2_tiny_bf16.bin", "llmc/gpt2_tiny_bf16.bin", True),
              ("nanochat/base_dir/base_checkpoints/d2", "nanochat/base_dir/base_checkpoints/d2/model_000060.pt",
               False),
              ("nanochat/base_dir/base_checkpoints/d2_bf16",
               "nanochat/base_dir/base_checkpoints/d2_bf16/model_000060.pt", True),
              ("nanogpt/out-pystdlib-char", "nanogpt/out-pystdlib-char/ckpt.pt", False)]


def test_every_family_loads_and_samples_within_the_bound(tmp_path):
    pytest.importorskip("transformers")
    gptlab = gptlab_step(tmp_path)
    cases = [(PEERS / rel, *sizes([PEERS / weights], bf16)) for rel, weights, bf16 in PEER_CASES]
    cases.append((gptlab, *sizes([gptlab / "model.safetensors"])))
    results = check_within_bound(cases, expect_ok=True)
    assert all(r["text"] is not None for r in results)


# ------------------------------------------------------------------ bigger genuine checkpoints: the 2 W term

def _random_state(make) -> dict:
    """Random float32 tensors of the shapes of the model `make()` builds (on the meta device)."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in make().state_dict().items()}
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=g) * 0.02 for k, s in shapes.items()}


def _big_gptlab(where: Path) -> tuple[Path, int, int]:
    d = gptlab_step(where, arch={"n_layer": 4, "n_embd": 384, "n_head": 6, "n_kv_head": 6, "vocab_size": 4096})
    return d, *sizes([d / "model.safetensors"])


def _big_hf(where: Path) -> tuple[Path, int, int]:
    from transformers import AutoConfig, AutoModelForCausalLM  # deferred: optional extra [hf]
    d = hf_folder(where, n_layer=4, n_embd=384, n_head=6, vocab_size=4096)
    config = AutoConfig.from_pretrained(d)
    state = _random_state(lambda: AutoModelForCausalLM.from_config(config))
    state.pop("lm_head.weight")                                 # tied to the embedding, as save_pretrained does
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    return d, *sizes([d / "model.safetensors"])


def _big_nanogpt(where: Path) -> tuple[Path, int, int]:
    from gptlab.models.gpt2 import GPT2, GPT2Config  # deferred: heavy (torch); only this builder needs it
    args = {"n_layer": 4, "n_head": 6, "n_embd": 384, "block_size": 128, "bias": True, "vocab_size": 96,
            "dropout": 0.0}
    model = _random_state(lambda: GPT2(GPT2Config(vocab_size=96, sequence_len=128, n_layer=4, n_head=6,
                                                  n_embd=384)))
    model["lm_head.weight"] = model["transformer.wte.weight"]                   # nanoGPT's tied head
    # nanoGPT saves AdamW's two moments too: twice the weights, which the loader must not read
    optim = {"state": {i: {"exp_avg": torch.zeros_like(t), "exp_avg_sq": torch.zeros_like(t)}
                       for i, t in enumerate(model.values())}, "param_groups": []}
    out = where / "out"
    out.mkdir(parents=True)
    torch.save({"model": model, "optimizer": optim, "model_args": args, "iter_num": 10, "best_val_loss": 1.5,
                "config": {"dataset": "x"}}, out / "ckpt.pt")
    shutil.copy(PEERS / "nanogpt" / "data" / "pystdlib_char" / "meta.pkl", out / "meta.pkl")
    # the loader maps the whole file (F) but copies only the model's tensors (W)
    w = sum(t.numel() * 4 for k, t in model.items() if k != "lm_head.weight")
    return out / "ckpt.pt", (out / "ckpt.pt").stat().st_size, w


def _big_nanochat(where: Path) -> tuple[Path, int, int]:
    from gptlab.models.nanochat import NanochatConfig, NanochatGPT  # deferred: heavy (torch); this builder only
    mc = {"sequence_len": 256, "vocab_size": 4096, "n_layer": 4, "n_head": 3, "n_kv_head": 3, "n_embd": 384,
          "window_pattern": "L"}
    state = {k: v.to(torch.bfloat16) for k, v in _random_state(lambda: NanochatGPT(NanochatConfig(**mc))).items()}
    tag = where / "base" / "base_checkpoints" / "big"
    tag.mkdir(parents=True)
    torch.save(state, tag / "model_000010.pt")
    (tag / "meta_000010.json").write_text(json.dumps({"model_config": mc, "step": 10}))
    shutil.copytree(NANOCHAT_BASE / "tokenizer", where / "base" / "tokenizer")
    return tag / "model_000010.pt", *sizes([tag / "model_000010.pt"], bf16=True)


def _big_llmc(where: Path) -> tuple[Path, int, int]:
    from gptlab.checkpoints.llmc import HEADER_BYTES, MODEL_MAGIC, _shapes  # deferred: heavy (torch)
    T, V, Vp, L, NH, C = 128, 50257, 50304, 2, 6, 384
    header = torch.zeros(HEADER_BYTES // 4, dtype=torch.int32)
    header[:8] = torch.tensor([MODEL_MAGIC, 5, T, V, L, NH, C, Vp])
    n = sum(math.prod(s) for _, s in _shapes(T, V, Vp, L, C))
    params = (torch.randn(n, generator=torch.Generator().manual_seed(0)) * 0.02).to(torch.bfloat16)
    d = where / "llmc"
    d.mkdir(parents=True)
    (d / "big.bin").write_bytes(header.numpy().tobytes() + params.view(torch.int16).numpy().tobytes())
    shutil.copy(PEERS / "llmc" / "tokenizer_stdlib_bpe50257.bin", d / "tokenizer.bin")
    return d / "big.bin", *sizes([d / "big.bin"], bf16=True)


def test_bigger_checkpoints_stay_within_twice_their_float32_weights(tmp_path):
    pytest.importorskip("transformers")
    cases = [build(tmp_path / build.__name__) for build in (_big_gptlab, _big_hf, _big_nanogpt, _big_nanochat,
                                                           _big_llmc)]
    assert all(w > 20 * MiB for _, _, w in cases)
    check_within_bound(cases, expect_ok=True)


# ------------------------------------------------------------------ hostile configs stay within the same bound

def test_hostile_configs_fail_in_one_line_within_the_bound(tmp_path):
    pytest.importorskip("transformers")
    hf = hf_folder(tmp_path / "hf", model_type="llama")                 # 6.5B parameters by transformers' defaults
    gptlab = gptlab_step(tmp_path / "gptlab", n_embd=16384, n_layer=64)  # 206B parameters
    nanogpt = nanogpt_ckpt(tmp_path / "nanogpt", vocab_size=2**31 - 1, block_size=2**31 - 1)
    nanochat = nanochat_ckpt(tmp_path / "nanochat", n_embd=65536, n_head=256, n_kv_head=256)
    cases = [(hf, *sizes([hf / "model.safetensors"])), (gptlab, *sizes([gptlab / "model.safetensors"])),
             (nanogpt, *sizes([nanogpt])), (nanochat, *sizes([nanochat]))]
    for r in check_within_bound(cases, expect_ok=False):
        assert "weights do not match" in r["error"] and "\n" not in r["error"], r
