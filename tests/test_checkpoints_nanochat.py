"""nanochat checkpoints: reader, model and bits-per-byte against the numbers nanochat's own code computed."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gptlab.checkpoints import discover, load
from gptlab.errors import GptlabError
from gptlab.evaluate.bpb import score_tokens
from gptlab.models.nanochat import NanochatConfig, NanochatGPT, attend, window_sizes

PEERS = Path(__file__).parent / "fixtures" / "peers"
BASE = PEERS / "nanochat" / "base_dir"
VAL = (PEERS / "text" / "val.txt").read_text()


def _ref(tag):
    return json.loads((PEERS / "nanochat" / f"reference_{tag}.json").read_text())


@pytest.fixture(scope="module", params=["d2", "d2_bf16"])
def loaded(request):
    return request.param, load(discover(BASE / "base_checkpoints" / request.param)[0])


def test_discover_accepts_base_dir_tag_dir_and_model_file():
    refs = discover(BASE)
    assert [(r.format, r.run, r.step) for r in refs] == [("nanochat", "d2", 60), ("nanochat", "d2_bf16", 60)]
    assert refs[0].tokens_seen == 60 * 8192                    # step x total_batch_size from meta
    assert len(discover(BASE / "base_checkpoints")) == 2
    one = discover(BASE / "base_checkpoints" / "d2" / "model_000060.pt")
    assert [r.run for r in one] == ["d2"]


def test_info_describes_the_checkpoint(loaded):
    tag, lm = loaded
    info = lm.info
    assert (info.family, info.vocab_size, info.context, info.step) == ("nanochat", 2048, 256, 60)
    assert info.params == sum(p.numel() for p in lm.model.parameters()) > 1_000_000
    assert info.meta["val_bpb"] == pytest.approx(_ref(tag)["checkpoint"]["meta_val_bpb"])
    assert len(info.weights_hash) == 16 and info.tokenizer_hash == lm.tokenizer.identity()


def test_single_row_logits_and_nll_match_nanochat(loaded):
    tag, lm = loaded
    ref = _ref(tag)["B_single_row"]
    with torch.no_grad():
        logits = lm.model(torch.tensor([ref["x"]]))[0]
    nll = F.cross_entropy(logits, torch.tensor(ref["y"]), reduction="none")
    torch.testing.assert_close(nll, torch.tensor(ref["per_position_nll_nats"]), rtol=1e-5, atol=1e-5)
    assert nll.mean().item() == pytest.approx(ref["mean_ce_nats"], rel=1e-5)
    for pos, want in zip(ref["logits_positions"], ref["logits_at_positions"]):
        torch.testing.assert_close(logits[pos], torch.tensor(want), rtol=1e-5, atol=1e-5)
    assert logits.argmax(-1).tolist() == ref["argmax_per_position"]


def test_evaluate_bpb_with_bos_rows_matches_nanochat(loaded):
    """Reference A: nanochat's evaluate_bpb over rows [BOS] + ids[i*256:(i+1)*256]."""
    tag, lm = loaded
    ref = _ref(tag)["A_val_bpb_bos_rows"]
    ids = lm.tokenizer.encode(VAL)
    assert len(ids) == ref["num_val_tokens"] and lm.tokenizer.bos_id == ref["bos_token_id"]
    rows = [[lm.tokenizer.bos_id] + ids[i * 256:(i + 1) * 256] for i in range(len(ids) // 256)]
    got = score_tokens(lm.model, rows, lm.tokenizer.token_bytes(), batch_size=4)
    assert (got.bytes, got.tokens) == (ref["sum_target_bytes"], ref["num_target_tokens"])
    assert got.bpb == pytest.approx(ref["evaluate_bpb"], rel=1e-5)
    assert got.nll == pytest.approx(ref["sum_nll_nats_over_counted_targets"], rel=1e-5)


def _greedy(model, prompt, n):
    cache = model.new_cache(1, len(prompt) + n)
    out = []
    with torch.no_grad():
        logits = model(torch.tensor([prompt]), cache)
        for _ in range(n):
            out.append(int(logits[0, -1].argmax()))
            logits = model(torch.tensor([[out[-1]]]), cache)
    return out


def test_greedy_continuations_match_nanochat(loaded):
    tag, lm = loaded
    for case in _ref(tag)["C_greedy"]:
        prompt = [lm.tokenizer.bos_id] + lm.tokenizer.encode(case["prompt"])
        assert prompt == case["prompt_token_ids"]
        out = _greedy(lm.model, prompt, 32)
        assert out == case["gpt_generate"]["generated_ids"]
        assert lm.tokenizer.decode(out) == case["gpt_generate"]["text"]


def _tiny(pattern="SL", seq=256, kv=1):
    torch.manual_seed(0)
    cfg = NanochatConfig(sequence_len=seq, vocab_size=100, n_layer=3, n_head=2, n_kv_head=kv, n_embd=32,
                         window_pattern=pattern)
    m = NanochatGPT(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return m.eval()


def test_window_pattern_tiles_with_a_long_last_layer():
    # nanochat: S = a quarter of the context rounded up to 128 (its inline comment "2048 -> 768" is wrong)
    cfg = NanochatConfig(sequence_len=2048, n_layer=5, window_pattern="SSL")
    assert window_sizes(cfg) == [512, 512, 2048, 512, 2048]
    assert window_sizes(NanochatConfig(sequence_len=1000, n_layer=2, window_pattern="S")) == [256, 1000]


def test_sliding_window_attention_against_explicit_softmax():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 10, 8, generator=g) for _ in range(3))
    got = attend(q, k, v, window=3)
    scores = (q @ k.transpose(-1, -2)) / 8 ** 0.5
    i, j = torch.arange(10)[:, None], torch.arange(10)[None, :]
    scores = scores.masked_fill(~((j <= i) & (i - j <= 3)), float("-inf"))
    torch.testing.assert_close(got, scores.softmax(-1) @ v, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pattern,seq", [("L", 64), ("SL", 256)])
def test_cached_decode_equals_full_forward(pattern, seq):
    m = _tiny(pattern, seq)
    if pattern == "SL":      # shrink the short window so that 40 tokens cross it
        m.windows = [5, 40, 40]
    idx = torch.randint(0, 100, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = m(idx)
        cache = m.new_cache(2, 40)
        parts = [m(idx[:, :9], cache)] + [m(idx[:, t:t + 1], cache) for t in range(9, 15)] + [m(idx[:, 15:], cache)]
        got = torch.cat(parts, dim=1)
        wide = m.new_cache(1, 40)
        m(idx[:1, :20], wide)
        wide = wide.expand(2)
        torch.testing.assert_close(m(idx[:1, 20:].expand(2, -1), wide)[1], want[0, 20:], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    tag = tmp_path / "base_checkpoints" / "d2"
    shutil.copytree(BASE / "base_checkpoints" / "d2", tag)
    with pytest.raises(GptlabError, match="tokenizer/tokenizer.pkl"):
        load(discover(tmp_path)[0])


def test_truncated_weights_are_a_clear_error(tmp_path):
    shutil.copytree(BASE, tmp_path / "base", ignore=shutil.ignore_patterns("d2_bf16"))
    model = tmp_path / "base" / "base_checkpoints" / "d2" / "model_000060.pt"
    model.write_bytes(model.read_bytes()[:100_000])
    with pytest.raises(GptlabError, match="model_000060.pt: cannot read weights"):
        load(discover(tmp_path / "base")[0])


def test_wrong_config_is_a_clear_error(tmp_path):
    shutil.copytree(BASE, tmp_path / "base", ignore=shutil.ignore_patterns("d2_bf16"))
    meta = tmp_path / "base" / "base_checkpoints" / "d2" / "meta_000060.json"
    m = json.loads(meta.read_text())
    m["model_config"]["n_embd"] = 256
    meta.write_text(json.dumps(m))
    with pytest.raises(GptlabError, match="do not match model_config"):
        load(discover(tmp_path / "base")[0])


def test_model_file_without_its_meta_is_a_clear_error(tmp_path):
    shutil.copy(BASE / "base_checkpoints" / "d2" / "model_000060.pt", tmp_path / "model_000060.pt")
    with pytest.raises(GptlabError, match="model_000060.pt: no meta_000060.json beside it"):
        discover(tmp_path / "model_000060.pt")
