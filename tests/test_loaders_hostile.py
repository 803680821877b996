"""Checkpoints whose config files lie: every family's loader ends in one GptlabError line, never another
exception and never an allocation the weights do not justify (gptlab/checkpoints/skeleton.py).

    python -m pytest tests/test_loaders_hostile.py

The checkpoints are genuine small ones of each family with chosen config fields replaced, written by the
builders of tests/hostile_checkpoints.py (`hf_folder`, `gptlab_step`, `nanogpt_ckpt`, `nanochat_ckpt`,
`llmc_bin`). Cases that allocated gigabytes before the fix run in a subprocess under an address-space limit
(`limited_run`, from the same file), so that a regression fails the test instead of the machine.
"""

from __future__ import annotations

import os
import shutil

import pytest
from hostile_checkpoints import (
    DELETE,
    NANOGPT_SRC,
    address_space_limit,
    assert_one_line_error,
    gptlab_cli,
    gptlab_step,
    hf_folder,
    limited_run,
    llmc_bin,
    nanochat_ckpt,
    nanogpt_ckpt,
    sample_in_child,
)

from gptlab import checkpoints
from gptlab.checkpoints import discover, load
from gptlab.errors import GptlabError

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
    from gptlab.cli import (
        main,  # deferred: heavy (torch via the CLI's imports); keeps collection light
    )
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
    from gptlab.cli import (
        main,  # deferred: heavy (torch via the CLI's imports); keeps collection light
    )
    if target == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
    assert main(["models", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gptlab: error: ") and len(err.splitlines()) == 1 and "unexpected" not in err, err
