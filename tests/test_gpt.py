"""gptlab's GPT: cache decoding equals full recompute, GQA, soft-cap, parameter and FLOP counts, presets."""

import pytest
import torch

from gptlab.config import load_config
from gptlab.models.gpt import GPT, GPTConfig


def random_model(**kw):
    torch.manual_seed(0)
    cfg = GPTConfig(**{**dict(n_layer=2, n_embd=64, n_head=2, n_kv_head=2, vocab_size=300, sequence_len=64), **kw})
    m = GPT(cfg)
    for p in m.parameters():      # the real init zeroes output projections; random weights test more
        torch.nn.init.normal_(p, std=0.1)
    return m.eval()


@pytest.mark.parametrize("n_kv_head", [2, 1])
def test_cache_decode_matches_full_forward(n_kv_head):
    m = random_model(n_kv_head=n_kv_head)
    idx = torch.randint(0, 300, (3, 30))
    with torch.no_grad():
        full = m(idx)
        cache = m.new_cache(3, 40)
        parts = [m(idx[:, :17], cache), m(idx[:, 17:21], cache)]
        parts += [m(idx[:, t:t + 1], cache) for t in range(21, 30)]
    assert cache.pos == 30
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)


def test_expand_cache_serves_several_samples():
    m = random_model()
    prompt = torch.randint(0, 300, (1, 10))
    nxt = torch.randint(0, 300, (4, 1))
    with torch.no_grad():
        cache = m.new_cache(1, 20)
        m(prompt, cache)
        cache = cache.expand(4)
        out = m(nxt, cache)[:, -1]
        ref = m(torch.cat([prompt.expand(4, -1), nxt], 1))[:, -1]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_softcap_bounds_logits_and_loss_is_finite():
    m = random_model()
    for p in m.lm_head.parameters():
        p.data.mul_(1000)
    idx = torch.randint(0, 300, (2, 16))
    logits = m(idx)
    assert logits.abs().max() <= m.config.softcap + 1e-4
    assert torch.isfinite(m(idx, targets=idx))


def test_init_zeroes_projections_and_loss_starts_near_uniform():
    m = GPT(GPTConfig(n_layer=2, n_embd=64, n_head=2, n_kv_head=2, vocab_size=512, sequence_len=32))
    m.init_weights(0)
    idx = torch.randint(0, 512, (4, 32))
    assert abs(m(idx, targets=idx).item() - torch.log(torch.tensor(512.0)).item()) < 0.05


def test_d12_preset_shape_params_and_flops():
    cfg = load_config("d12")
    gc = GPTConfig.from_model_config(cfg.model)
    assert (gc.n_layer, gc.n_embd, gc.n_head, gc.vocab_size) == (12, 768, 6, 32768)
    with torch.device("meta"):
        m = GPT(gc)
    # 12 blocks x 12 x 768^2 (q, k, v, proj: 4; mlp: 8) + untied embedding and head
    expected = 12 * 12 * 768 ** 2 + 2 * 32768 * 768
    assert m.num_params() == expected
    assert m.flops_per_token() == 6 * (expected - 32768 * 768) + 12 * 12 * 768 * 2048
