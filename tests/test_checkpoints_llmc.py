"""llm.c .bin models and tokenizers (plus the other GPT-2 BPE files) against llm.c's own numbers."""

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gptlab.checkpoints import discover, load
from gptlab.checkpoints.bpe_files import read_llmc_tokenizer, read_tiktoken_file, read_vocab_merges
from gptlab.errors import GptlabError
from gptlab.evaluate.bpb import score_tokens
from gptlab.tokenizer import HFTokenizer

PEERS = Path(__file__).parent / "fixtures" / "peers"
LLMC = PEERS / "llmc"
REF = json.loads((LLMC / "reference.json").read_text())
VAL_TEXT = (PEERS / "text" / "val.txt").read_text()
KINDS = {"fp32": ("gpt2_tiny.bin", "fp32_file"), "bf16": ("gpt2_tiny_bf16.bin", "bf16_file")}


@pytest.fixture(scope="module", params=list(KINDS))
def loaded(request):
    fname, key = KINDS[request.param]
    return request.param, REF[key], load(discover(LLMC / fname)[0])


def test_discover_finds_both_models_and_not_the_other_bins():
    refs = discover(LLMC)
    assert sorted(r.run for r in refs) == ["gpt2_tiny", "gpt2_tiny_bf16"]
    assert all(r.format == "llmc" and r.step is None and r.tokens_seen is None for r in refs)


def test_info(loaded):
    _, _, lm = loaded
    cfg = REF["config"]
    assert (lm.info.vocab_size, lm.info.context, lm.info.family) == (cfg["vocab_size"], cfg["block_size"], "gpt2")
    # llm.c's C code counts 3,323,648 parameters including the 47 padded vocab rows we drop
    assert lm.info.params == 3_323_648 - 47 * 64
    assert lm.info.config["padded_vocab_size"] == 50304
    assert lm.tokenizer.vocab_size == 50257 and lm.tokenizer.bos_id == REF["eot_token"]


def test_fixed_sequence_matches_llmc(loaded):
    kind, ref, lm = loaded
    fs = ref["fixed_sequence"]
    with torch.no_grad():
        logits = lm.model(torch.tensor([fs["x"]]))[0]
    nll = F.cross_entropy(logits, torch.tensor(fs["y"]), reduction="none")
    assert nll.mean().item() == pytest.approx(fs["mean_ce_nats"], rel=1e-5)
    torch.testing.assert_close(nll, torch.tensor(fs["per_position_nll_nats"]), atol=1e-4, rtol=1e-5)
    full = np.load(LLMC / f"ref_logits_{kind}_pos0_and_pos63.npy")
    torch.testing.assert_close(logits[[0, 63]], torch.from_numpy(full), atol=1e-4, rtol=1e-4)
    assert logits.argmax(-1).tolist() == fs["argmax_per_position"]


def test_val_bpb_matches_llmc(loaded):
    _, ref, lm = loaded
    val = ref["val"]
    tokens = np.fromfile(LLMC / "stdlib_val.bin", dtype=np.uint16, offset=1024).astype(np.int64).tolist()
    rows = [tokens[i * 64:i * 64 + 65] for i in range(val["steps"] * val["B"])]   # their 49 batches of 4x64
    got = score_tokens(lm.model, rows, lm.tokenizer.token_bytes(), batch_size=32)
    assert (got.tokens, got.bytes) == (val["num_non_eot_targets"], val["bytes_non_eot_targets"])
    assert got.bpb == pytest.approx(val["bpb_excluding_eot_targets"], rel=1e-5)


def test_greedy_sample_matches_llmc():
    lm = load(discover(LLMC / "gpt2_tiny.bin")[0])
    want = REF["fp32_file"]["samples"]["greedy_top1"]["ids"]
    ids = want[:1]
    with torch.no_grad():
        cache = lm.model.new_cache(1, 64)
        logits = lm.model(torch.tensor([ids]), cache)
        while len(ids) < len(want):
            ids.append(int(logits[0, -1].argmax()))
            logits = lm.model(torch.tensor([ids[-1:]]), cache)
    assert ids == want


def test_tokenizer_bin_encodes_like_the_data_files():
    tok = read_llmc_tokenizer(LLMC / "tokenizer_stdlib_bpe50257.bin")
    tokens = np.fromfile(LLMC / "stdlib_val.bin", dtype=np.uint16, offset=1024).tolist()
    first_doc = tokens[1:tokens.index(50256, 1)]                 # data files are [EOT] + doc, per file
    assert tok.encode(tok.decode(first_doc)) == first_doc
    assert VAL_TEXT.startswith(tok.decode(first_doc))
    assert tok.token_bytes()[50256] == 0 and tok.token_bytes()[:256].tolist() == [1] * 256


def test_tiktoken_and_vocab_merges_files_give_the_same_tokens(tmp_path):
    tok = read_llmc_tokenizer(LLMC / "tokenizer_stdlib_bpe50257.bin")
    tkfile = tmp_path / "x.tiktoken"
    ranks = {i: b for b, i in tok._ranks.items()}
    tkfile.write_text("".join(f"{base64.b64encode(ranks[i]).decode()} {i}\n" for i in sorted(ranks)))
    assert read_tiktoken_file(tkfile).encode(VAL_TEXT[:5000]) == tok.encode(VAL_TEXT[:5000])
    # vocab.json + merges.txt, written from the HF peer's tokenizer.json, must encode as tokenizers does
    spec = json.loads((PEERS / "hf_gpt2" / "tokenizer.json").read_text())
    (tmp_path / "vocab.json").write_text(json.dumps(spec["model"]["vocab"]))
    merges = [" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]]
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    vm = read_vocab_merges(tmp_path / "vocab.json", tmp_path / "merges.txt")
    hf = HFTokenizer.from_file(PEERS / "hf_gpt2" / "tokenizer.json")
    assert vm.encode(VAL_TEXT) == hf.encode(VAL_TEXT)
    assert vm.bos_id == hf.bos_id == 0


def _copy(tmp_path, names):
    for n in names:
        shutil.copy(LLMC / n, tmp_path / n)
    return tmp_path


def test_unknown_version_is_refused(tmp_path):
    d = _copy(tmp_path, ["gpt2_tiny.bin", "tokenizer_stdlib_bpe50257.bin"])
    raw = bytearray((d / "gpt2_tiny.bin").read_bytes())
    raw[4:8] = (4).to_bytes(4, "little")
    (d / "gpt2_tiny.bin").write_bytes(bytes(raw))
    with pytest.raises(GptlabError, match="version 4 is unknown"):
        load(discover(d / "gpt2_tiny.bin")[0])


def test_truncated_model_is_refused(tmp_path):
    d = _copy(tmp_path, ["gpt2_tiny_bf16.bin", "tokenizer_stdlib_bpe50257.bin"])
    (d / "gpt2_tiny_bf16.bin").write_bytes((d / "gpt2_tiny_bf16.bin").read_bytes()[:-100])
    with pytest.raises(GptlabError, match="gpt2_tiny_bf16.bin: .* truncated or corrupt"):
        load(discover(d)[0])


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    d = _copy(tmp_path, ["gpt2_tiny_bf16.bin"])
    with pytest.raises(GptlabError, match="no llm.c tokenizer found"):
        load(discover(d)[0])


def test_bad_tokenizer_magic_and_version(tmp_path):
    raw = bytearray((LLMC / "tokenizer_stdlib_bpe50257.bin").read_bytes())
    raw[4:8] = (9).to_bytes(4, "little")
    (tmp_path / "t.bin").write_bytes(bytes(raw))
    with pytest.raises(GptlabError, match="tokenizer version 9 is unknown"):
        read_llmc_tokenizer(tmp_path / "t.bin")
    (tmp_path / "t.bin").write_bytes(bytes(raw[:5000]))
    with pytest.raises(GptlabError):
        read_llmc_tokenizer(tmp_path / "t.bin")
