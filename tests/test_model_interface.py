"""Every model family against the interface in gptlab/models/__init__.py: `CausalLM` (and `SplitHeadLM` where
forward is head(hidden(...))), the same parameter names, the documented shapes, and a `Cache` from
new_cache whose incremental forward gives the logits of the full one."""

import inspect
from pathlib import Path

import pytest
import torch

from gptlab.checkpoints import discover, load
from gptlab.models import Cache, CausalLM, KVCache, SplitHeadLM
from gptlab.models.gpt import GPT, GPTConfig

PEERS = Path(__file__).parent / "fixtures" / "peers"
FAMILIES = {                    # family -> the peer checkpoint it is read from (None: built here)
    "gptlab": None,
    "nanochat": "nanochat/base_dir/base_checkpoints/d2",
    "nanogpt": "nanogpt/out-pystdlib-char",
    "llmc": "llmc/gpt2_tiny.bin",
    "hf": "hf_gpt2/trained_200steps",
}
SPLIT = {"gptlab", "nanochat", "nanogpt", "llmc"}       # gpt.py, nanochat.py, gpt2.py: forward = head(hidden)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    where = FAMILIES[request.param]
    if where is None:
        torch.manual_seed(0)
        model = GPT(GPTConfig(n_layer=2, n_embd=32, n_head=2, n_kv_head=1, vocab_size=64, sequence_len=32)).eval()
        return request.param, model
    if request.param == "hf":
        pytest.importorskip("transformers")
    return request.param, load(discover(PEERS / where)[0]).model


def _names(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def test_every_family_is_a_causal_lm(family):
    name, model = family
    assert isinstance(model, torch.nn.Module) and isinstance(model, CausalLM)
    assert isinstance(model, SplitHeadLM) == (name in SPLIT)
    assert isinstance(model.vocab_size, int) and isinstance(model.sequence_len, int)
    assert model.num_params() == sum(p.numel() for p in model.parameters())


def test_methods_take_the_interface_parameters(family):
    name, model = family
    protocol = SplitHeadLM if name in SPLIT else CausalLM
    for method in ("forward", "new_cache", "num_params", *(("hidden", "head") if name in SPLIT else ())):
        want = inspect.signature(getattr(protocol, method)).parameters
        got = inspect.signature(getattr(model, method)).parameters
        assert list(got)[:len(want) - 1] == _names(getattr(protocol, method)), (name, method)
        for p in want.values():             # the same defaults: forward(idx, cache=None, logits_from=0)
            if p.name != "self":
                assert got[p.name].default == p.default, (name, method, p.name)
        for extra in list(got)[len(want) - 1:]:     # anything more is keyword-only (gpt.py's `targets`)
            assert got[extra].kind is inspect.Parameter.KEYWORD_ONLY, (name, method, extra)


@torch.no_grad()
def test_forward_shapes_and_cache(family):
    name, model = family
    B, T, k = 2, 12, 5
    idx = torch.randint(0, model.vocab_size, (B, T), generator=torch.Generator().manual_seed(1))
    full = model(idx)
    assert full.shape == (B, T, model.vocab_size) and full.dtype == torch.float32
    tail = model(idx, logits_from=k)
    assert tail.shape == (B, T - k, model.vocab_size)
    torch.testing.assert_close(tail, full[:, k:], atol=1e-4, rtol=1e-4)
    if name in SPLIT:
        h = model.hidden(idx, logits_from=k)
        assert h.shape[:2] == (B, T - k) and h.dim() == 3
        torch.testing.assert_close(model.head(h), tail)

    cache = model.new_cache(B, T)
    assert isinstance(cache, Cache) and cache.pos == 0 and cache.batch_size == B
    first = model(idx[:, :T - 1], cache)
    assert cache.pos == T - 1 and first.shape == (B, T - 1, model.vocab_size)
    last = model(idx[:, T - 1:], cache)
    assert cache.pos == T and last.shape == (B, 1, model.vocab_size)
    torch.testing.assert_close(last[:, 0], full[:, -1], atol=1e-4, rtol=1e-4)


def test_what_lacks_a_method_is_not_a_causal_lm():
    class NoCache(torch.nn.Module):
        vocab_size, sequence_len = 8, 8

        def forward(self, idx, cache=None, logits_from=0):
            return torch.zeros(*idx.shape, 8)

        def num_params(self):
            return 0

    assert not isinstance(NoCache(), CausalLM)
    assert isinstance(KVCache(1, 1, 1, 4, 2), Cache)
