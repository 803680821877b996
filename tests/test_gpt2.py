"""gptlab.models.gpt2 against transformers' GPT2LMHeadModel on the same random weights."""

import pytest
import torch

from gptlab.models.gpt2 import GPT2, GPT2Config, config_from_hf, from_hf_state_dict

transformers = pytest.importorskip("transformers")


def _pair(seed=0, n_positions=32, bias=True):
    cfg = transformers.GPT2Config(vocab_size=97, n_positions=n_positions, n_embd=48, n_layer=3, n_head=4,
                                  attn_implementation="eager")
    torch.manual_seed(seed)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():   # HF zero-inits biases and sets LayerNorm to 1/0: perturb so they matter
        for name, p in hf.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    ours = GPT2.from_state_dict(config_from_hf(cfg), from_hf_state_dict(hf.state_dict(), config_from_hf(cfg)))
    return hf, ours


def test_full_forward_matches_transformers():
    hf, ours = _pair()
    idx = torch.randint(0, 97, (3, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = hf(input_ids=idx).logits
        got = ours(idx)
    assert got.dtype == torch.float32 and got.shape == (3, 32, 97)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_incremental_decode_matches_transformers():
    hf, ours = _pair(seed=3)
    idx = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = hf(input_ids=idx).logits
        cache = ours.new_cache(2, 32)
        parts = [ours(idx[:, :7], cache)]                       # prefill
        parts += [ours(idx[:, t:t + 1], cache) for t in range(7, 12)]   # one token at a time
        parts.append(ours(idx[:, 12:], cache))                  # a chunk after cached positions
    assert cache.pos == 20
    torch.testing.assert_close(torch.cat(parts, dim=1), want, atol=1e-4, rtol=1e-4)


def test_expanded_cache_continues_each_row():
    _, ours = _pair(seed=4)
    idx = torch.randint(0, 97, (1, 10), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        cache = ours.new_cache(1, 32)
        ours(idx[:, :6], cache)
        wide = cache.expand(3)
        got = ours(idx[:, 6:].expand(3, -1), wide)
        want = ours(idx)[:, 6:]
    for r in range(3):
        torch.testing.assert_close(got[r], want[0], atol=1e-5, rtol=1e-5)


def test_logits_from_returns_the_tail_only():
    _, ours = _pair()
    idx = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx, logits_from=10), ours(idx)[:, 10:])


def test_no_bias_variant_and_positions_limit():
    cfg = GPT2Config(vocab_size=50, sequence_len=8, n_layer=1, n_head=2, n_embd=16, bias=False)
    m = GPT2(cfg).init_random(seed=0).eval()
    assert not any(n.endswith("bias") for n, _ in m.named_parameters())
    assert m.num_params() == 50 * 16 + 8 * 16 + 16 * 48 + 16 * 16 + 16 * 64 * 2 + 3 * 16
    with pytest.raises(ValueError, match="learned positions"):
        m(torch.zeros(1, 9, dtype=torch.long))


def test_untied_head_is_refused():
    _, ours = _pair()
    state = dict(ours.state_dict())
    state["lm_head.weight"] = torch.randn_like(state["transformer.wte.weight"])
    with pytest.raises(ValueError, match="untied"):
        GPT2.from_state_dict(ours.config, state)
