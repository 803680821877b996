"""nanoGPT ckpt.pt: reader, tokenizer search, and agreement with nanoGPT's own losses."""

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gptlab.checkpoints import discover, load
from gptlab.errors import GptlabError
from gptlab.evaluate.bpb import score_tokens

PEERS = Path(__file__).parent / "fixtures" / "peers"
NG = PEERS / "nanogpt"
REF = json.loads((NG / "reference.json").read_text())


@pytest.fixture(scope="module")
def lm():
    return load(discover(NG / "out-pystdlib-char")[0])


def test_discover_and_info(lm):
    refs = discover(NG)                                       # a folder holding out_dirs
    assert [(r.format, r.run, r.step) for r in refs] == [("nanogpt", "out-pystdlib-char", 200)]
    assert refs[0].tokens_seen == 200 * 1 * 64 * 64          # iters x grad accum x batch x block
    info = lm.info
    assert (info.family, info.vocab_size, info.context) == ("gpt2", 96, 64)
    assert info.meta["best_val_loss"] == pytest.approx(REF["checkpoint"]["best_val_loss"])
    assert lm.tokenizer.vocab_size == 96 and lm.tokenizer.bos_id is None


def test_fixed_batch_matches_nanogpt(lm):
    fb = REF["fixed_batch"]
    x, y = torch.tensor(fb["x"]), torch.tensor(fb["y"])
    assert lm.tokenizer.decode(fb["x"][0]) == fb["x_text"][0]
    with torch.no_grad():
        logits = lm.model(x)
    loss = F.cross_entropy(logits.reshape(-1, 96), y.reshape(-1))
    assert loss.item() == pytest.approx(fb["mean_ce_nats"], rel=1e-5)
    torch.testing.assert_close(logits[0], torch.tensor(fb["logits_row0"]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[:, -1], torch.tensor(fb["last_position_logits_all_rows"]),
                               atol=1e-5, rtol=1e-5)
    got = score_tokens(lm.model, [fb["x"][r] + fb["y"][r][-1:] for r in range(4)], lm.tokenizer.token_bytes())
    assert got.bpb == pytest.approx(fb["bits_per_byte"], rel=1e-5)


def test_whole_val_matches_nanogpt(lm):
    full = REF["full_val"]
    val = np.fromfile(NG / "data" / "pystdlib_char" / "val.bin", dtype=np.uint16).astype(np.int64).tolist()
    rows = [val[i * 64:(i + 1) * 64 + 1] for i in range(full["num_windows"])]
    got = score_tokens(lm.model, rows, lm.tokenizer.token_bytes(), batch_size=64)
    assert (got.tokens, got.bytes) == (full["num_targets"], full["num_bytes"])
    assert got.nll == pytest.approx(full["sum_nll_nats"], rel=1e-5)
    assert got.bpb == pytest.approx(full["bits_per_byte"], rel=1e-5)


def test_greedy_sample_matches_nanogpt(lm):
    log = (NG / "sample_seed1337_topk1_greedy.txt").read_text()
    want = log[log.index("\ndef ") + 1:].split("\n---------------")[0]     # sample.py's output after its log
    ids = lm.tokenizer.encode("def ")
    with torch.no_grad():
        while len(ids) < len(want):
            ids.append(int(lm.model(torch.tensor([ids[-64:]]))[0, -1].argmax()))
    assert lm.tokenizer.decode(ids) == want


def _copy_ckpt(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(NG / "out-pystdlib-char" / "ckpt.pt", out / "ckpt.pt")
    return out


def test_meta_pkl_beside_the_checkpoint_and_compiled_prefix(tmp_path):
    out = _copy_ckpt(tmp_path)
    shutil.copy(NG / "data" / "pystdlib_char" / "meta.pkl", out / "meta.pkl")
    ck = torch.load(out / "ckpt.pt", weights_only=True)
    ck["model"] = {"_orig_mod." + k: v for k, v in ck["model"].items()}
    torch.save(ck, out / "ckpt.pt")
    got = load(discover(out / "ckpt.pt")[0])
    assert got.tokenizer.vocab_size == 96 and got.info.params > 100_000


def test_gpt2_bpe_files_beside_the_checkpoint(tmp_path):
    out = _copy_ckpt(tmp_path)
    shutil.copy(PEERS / "hf_gpt2" / "tokenizer.json", out / "tokenizer.json")
    with pytest.raises(GptlabError, match="tokenizer has 512 ids but the model only 96"):
        load(discover(out)[0])


def test_missing_tokenizer_says_what_to_put_where(tmp_path):
    out = _copy_ckpt(tmp_path)
    with pytest.raises(GptlabError, match=r"data/pystdlib_char/meta.pkl.*tokenizer.json, vocab.json \+ merges.txt"):
        load(discover(out)[0])


def test_truncated_ckpt_is_a_clear_error(tmp_path):
    out = _copy_ckpt(tmp_path)
    (out / "ckpt.pt").write_bytes((out / "ckpt.pt").read_bytes()[:200_000])
    with pytest.raises(GptlabError, match=r"ckpt.pt: cannot read weights"):
        discover(out)


def test_meta_pkl_that_runs_code_is_refused(tmp_path):
    out = _copy_ckpt(tmp_path)
    (out / "meta.pkl").write_bytes(pickle.dumps({"itos": {0: "a"}, "x": print}))
    with pytest.raises(GptlabError, match="refusing to unpickle builtins.print"):
        load(discover(out)[0])


def test_empty_directory_has_no_checkpoints(tmp_path):
    with pytest.raises(GptlabError, match="no checkpoint found"):
        discover(tmp_path)
