"""The KV cache: a prompt shared by its samples (SharedPrefixCache) decodes exactly like copies of it."""

import pytest
import torch

from gptlab.engine import Engine
from gptlab.models.gpt import GPT, GPTConfig
from gptlab.models.gpt2 import GPT2, GPT2Config
from gptlab.models.kv_cache import KVCache, SharedPrefixCache


def gpt(n_kv_head):
    torch.manual_seed(0)
    m = GPT(GPTConfig(n_layer=2, n_embd=64, n_head=4, n_kv_head=n_kv_head, vocab_size=300, sequence_len=64))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return m.eval()


def gpt2():
    return GPT2(GPT2Config(vocab_size=300, sequence_len=64, n_layer=2, n_head=4, n_embd=64)).init_random(0).eval()


MODELS = {"gpt2": gpt2, "gpt": lambda: gpt(4), "gpt-gqa": lambda: gpt(2)}


@pytest.mark.parametrize("name", MODELS)
def test_shared_prompts_decode_like_copied_prompts(name):
    """3 prompts, uneven numbers of samples (3, 1, 2), one-token steps, rows dropped midway, then a
    several-token step (the materialising path): logits equal those of a cache holding full copies."""
    m = MODELS[name]()
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(0, 300, (3, 9), generator=g)
    owner = [0, 0, 1, 2, 0, 2]
    steps = torch.randint(0, 300, (6, 12), generator=g)
    with torch.no_grad():
        base = m.new_cache(3, 40)
        m(prompts, base)
        copied = m.new_cache(3, 40)
        m(prompts, copied)
        copied.select(torch.tensor(owner))
        shared = base.share(owner)
        assert isinstance(shared, SharedPrefixCache) and shared.pk.shape[1] == 3
        rows = torch.arange(6)
        for t in range(8):
            if t == 4:                                   # drop rows 1 and 3: prompt 1 loses its only sample
                rows = torch.tensor([0, 2, 4, 5])
                keep = torch.tensor([0, 2, 4, 5])
                shared.select(keep)
                copied.select(keep)
            x = steps[rows, t:t + 1]
            torch.testing.assert_close(m(x, shared), m(x, copied), rtol=1e-5, atol=1e-5)
        x = steps[rows, 8:12]
        torch.testing.assert_close(m(x, shared), m(x, copied), rtol=1e-5, atol=1e-5)
    assert shared.pos == copied.pos == 9 + 12


class _Ids:
    vocab_size, bos_id = 300, None


def test_engine_samples_equal_with_and_without_shared_prompts(monkeypatch):
    m = gpt2()
    prompts = torch.randint(0, 300, (3, 10), generator=torch.Generator().manual_seed(2)).tolist()
    rows = [p for p in prompts for _ in range(4)]
    run = lambda: [c.tokens for c in Engine(m, _Ids(), stop_ids=[]).run_batch(  # noqa: E731
        rows, [0.8] * 12, list(range(12)), 20)]
    shared = run()
    monkeypatch.setattr(KVCache, "share", None)          # the engine falls back to copying each prompt
    copied = run()
    assert shared == copied
    assert len({tuple(t) for t in shared}) > 3           # samples of one prompt differ: a real test
