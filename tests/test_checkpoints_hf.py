"""Hugging Face folders through transformers, against the numbers transformers computed for the peers."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gptlab.checkpoints import discover, load
from gptlab.errors import GptlabError
from gptlab.evaluate.bpb import score_tokens
from gptlab.models.hf import load_hf_causal_lm

pytest.importorskip("transformers")

PEERS = Path(__file__).parent / "fixtures" / "peers"
HF = PEERS / "hf_gpt2"
REF = json.loads((HF / "reference.json").read_text())
VAL = (PEERS / "text" / "val.txt").read_text()


@pytest.fixture(scope="module", params=["random_init", "trained_200steps"])
def loaded(request):
    return request.param, load(discover(HF / request.param)[0])


def test_discover_lists_both_model_folders():
    refs = discover(HF)
    assert [(r.format, r.run, r.step) for r in refs] == [("hf", "random_init", None),
                                                        ("hf", "trained_200steps", None)]
    assert discover(HF / "random_init" / "model.safetensors")[0].path == HF / "random_init"


def test_info(loaded):
    _, lm = loaded
    assert (lm.info.family, lm.info.vocab_size, lm.info.context) == ("hf:gpt2", 512, 256)
    assert lm.info.params == sum(p.numel() for p in lm.model.parameters())
    assert lm.tokenizer.bos_id == REF["eot_id"] == 0


def test_first_256_tokens_match_transformers_reference(loaded):
    name, lm = loaded
    ids = lm.tokenizer.encode(VAL)[:256]
    assert ids == REF["input_ids_first256"]
    # the reference prepends nothing: token 0 is context only, 255 targets over 415 bytes
    got = score_tokens(lm.model, [ids], lm.tokenizer.token_bytes())
    assert (got.tokens, got.bytes) == (REF["num_targets"], REF["target_utf8_bytes"])
    assert got.nll == pytest.approx(REF[name]["eager"]["sum_nll_nats"], rel=1e-5)
    assert got.bpb == pytest.approx(REF[name]["eager"]["bits_per_byte"], rel=1e-5)
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids]))[0]
    for pos, want in zip(REF[name]["logits_positions"], REF[name]["logits_at_positions"]):
        torch.testing.assert_close(logits[pos], torch.tensor(want), atol=1e-4, rtol=1e-4)


def test_greedy_generate_with_wrapped_cache_matches_transformers():
    lm = load(discover(HF / "trained_200steps")[0])
    g = REF["trained_200steps"]["greedy_generate"]
    prompt = lm.tokenizer.encode(g["prompt"])
    assert prompt == g["prompt_ids"]
    with torch.no_grad():
        cache = lm.model.new_cache(1, 64)
        logits = lm.model(torch.tensor([prompt]), cache)
        wide = cache.expand(2)                                  # the wrapped cache repeats rows too
        out = []
        for _ in range(32):
            out.append(int(logits[0, -1].argmax()))
            logits = lm.model(torch.tensor([[out[-1]]]), cache)
        first = lm.model(torch.tensor([[out[0]], [out[0]]]), wide)
    assert out == g["generated_ids"] and lm.tokenizer.decode(out) == g["text"]
    assert cache.pos == len(prompt) + 32 and wide.pos == len(prompt) + 1
    assert int(first[1, -1].argmax()) == out[1]


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(HF / "trained_200steps", d)
    (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:300_000])
    with pytest.raises(GptlabError, match="model.safetensors: cannot read weights"):
        load(discover(d)[0])


def test_missing_tensors_are_refused_not_randomly_filled(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(HF / "trained_200steps", d)
    state = load_file(d / "model.safetensors")
    del state["transformer.h.1.mlp.c_fc.weight"]
    save_file(state, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(GptlabError, match=r"model.safetensors: weights do not match config.json: the file lacks "
                                          r"transformer.h.1.mlp.c_fc.weight \(64, 256\)"):
        load(discover(d)[0])


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(HF / "random_init", d, ignore=shutil.ignore_patterns("tokenizer*"))
    with pytest.raises(GptlabError, match="no tokenizer found"):
        load(discover(d)[0])


def test_without_transformers_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)      # what an environment without it looks like
    with pytest.raises(GptlabError, match=r"needs transformers: pip install 'gptlab\[hf\]'"):
        load_hf_causal_lm(HF / "random_init")


def test_pickle_only_weights_are_not_read(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(HF / "random_init", d, ignore=shutil.ignore_patterns("*.safetensors"))
    (d / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(GptlabError, match="only pytorch_model.bin weights.*safetensors"):
        load(discover(d)[0])


def test_trainer_checkpoints_give_step_and_tokens(tmp_path):
    run = tmp_path / "out"
    for step in (100, 200):
        shutil.copytree(HF / "trained_200steps", run / f"checkpoint-{step}")
    (run / "checkpoint-200" / "trainer_state.json").write_text(
        json.dumps({"global_step": 200, "num_input_tokens_seen": 409600}))
    refs = discover(run)
    assert [(r.run, r.step, r.tokens_seen) for r in refs] == [("out", 100, None), ("out", 200, 409600)]
    assert load(refs[1]).info.tokens_seen == 409600
