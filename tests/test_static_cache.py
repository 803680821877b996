"""The fixed-shape decoding path that CUDA graphs replay, checked on CPU (and on a GPU when there is one): a
StaticKVCache gives the dynamic cache's logits and tokens (greedy and sampled, rows stopping early, shared
prompts), a DecodeStep rewound after a warm-up step changes nothing, and a graph asked for where none can be
captured falls back with a note instead of failing."""

import pytest
import torch

from gptlab.engine import Engine
from gptlab.errors import GptlabError
from gptlab.models.decode_graph import DecodeStep, fixed_shape_step, has_static_cache
from gptlab.models.kv_cache import KVCache, StaticKVCache
from test_kv_cache import gpt, gpt2   # the same tiny models as the dynamic cache's tests

MODELS = {"gpt": lambda: gpt(4), "gpt-gqa": lambda: gpt(2), "gpt2": gpt2}


class _Ids:
    vocab_size, bos_id = 300, None


def prompts():
    g = torch.Generator().manual_seed(1)
    out = [torch.randint(0, 300, (n,), generator=g).tolist() for n in (5, 9, 9, 3, 1)]
    return out + [out[1], out[1]]                   # a prompt sampled three times: shared by the dynamic cache


@pytest.mark.parametrize("name", MODELS)
def test_static_cache_gives_the_dynamic_caches_logits(name):
    m = MODELS[name]()
    x = torch.randint(0, 300, (3, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        dyn, sta = m.new_cache(3, 40), m.new_cache(3, 40, static=True)
        assert type(dyn) is KVCache and isinstance(sta, StaticKVCache)
        torch.testing.assert_close(m(x[:, :7], sta), m(x[:, :7], dyn), rtol=1e-5, atol=1e-5)   # prefill
        for t in range(7, 20):                                                                # one-token steps
            torch.testing.assert_close(m(x[:, t:t + 1], sta), m(x[:, t:t + 1], dyn), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(m(x[:, :5], m.new_cache(3, 40, static=True)), m(x[:, :5]), rtol=1e-5, atol=1e-5)
    assert sta.pos == dyn.pos == 20 and int(sta.pos_t) == 20
    assert sta.positions(3).tolist() == dyn.positions(3).tolist() == [20, 21, 22]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_static_decoding_gives_the_dynamic_caches_tokens(name, temperature):
    """Greedy and sampled, with a stop token that ends some rows early: the dynamic path drops those rows
    from its batch, the static one keeps them riding along; every row's tokens are the same."""
    m, ps = MODELS[name](), prompts()
    n = len(ps)
    free = Engine(m, _Ids(), decode="eager").run_batch(ps, [temperature] * n, list(range(n)), 30)
    stop = free[0].tokens[10]                        # a token row 0 emits: it and perhaps others stop there
    eager = Engine(m, _Ids(), decode="eager", stop_ids=[stop]).run_batch(ps, [temperature] * n, list(range(n)), 30)
    engine = Engine(m, _Ids(), decode="static", stop_ids=[stop])
    static = engine.run_batch(ps, [temperature] * n, list(range(n)), 30)
    assert engine.decode == "static" and not engine.notes
    assert any(c.stopped for c in eager) and not all(c.stopped for c in eager)
    assert [c.tokens for c in static] == [c.tokens for c in eager]
    assert [c.stopped for c in static] == [c.stopped for c in eager]


def test_a_step_rewound_after_warm_up_decodes_the_same():
    """What the graph capture does to the cache (one step run, then rewound) leaves decoding unchanged."""
    m = gpt(2)
    x = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = m(x, m.new_cache(2, 16))[:, 5:]                     # logits of positions 5..11
        cache = m.new_cache(2, 16, static=True)
        m(x[:, :5], cache)
        step = DecodeStep(lambda t: m(t, cache), cache, 2, "static")
        step(torch.randint(0, 300, (2, 1)))                        # a warm-up step with other tokens ...
        cache.rewind(5)                                            # ... undone
        got = torch.cat([step(x[:, t:t + 1]) for t in range(5, 12)], dim=1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert cache.pos == 12 and int(cache.pos_t) == 12


def test_expand_and_select_keep_the_static_layout():
    m = gpt(4)
    x = torch.randint(0, 300, (2, 6), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        base = m.new_cache(2, 20, static=True)
        m(x, base)
        wide = base.expand(3)                                          # rows 0,0,0,1,1,1
        assert isinstance(wide, StaticKVCache) and wide.batch_size == 6 and wide.pos == 6
        assert torch.count_nonzero(wide.k[:, :, :, 6:]) == 0           # zeros, never garbage, after the prefix
        nxt = torch.tensor([[7], [7], [7], [9], [9], [9]])
        torch.testing.assert_close(m(nxt, wide)[[0, 3]], m(nxt[[0, 3]], base), rtol=1e-5, atol=1e-5)


def test_graph_modes_fall_back_where_nothing_can_be_captured():
    """On a CPU a graph cannot be captured: the engine notes it once and decodes the static path eagerly."""
    m, ps = gpt(4), prompts()
    n = len(ps)
    engine = Engine(m, _Ids(), decode="graph")
    got = engine.run_batch(ps, [0.0] * n, list(range(n)), 12)
    assert engine.decode == "static" and len(engine.notes) == 1 and "needs a CUDA device" in engine.notes[0]
    want = Engine(m, _Ids(), decode="eager").run_batch(ps, [0.0] * n, list(range(n)), 12)
    assert [c.tokens for c in got] == [c.tokens for c in want]
    cache = m.new_cache(1, 8, static=True)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        DecodeStep(lambda t: m(t, cache), cache, 1, "graph")
    with pytest.raises(ValueError, match="needs a StaticKVCache"):
        fixed_shape_step(lambda t: t, m.new_cache(1, 8), 1, "static", [])


def test_decode_modes_by_family_and_device():
    assert Engine(gpt(4), _Ids()).decode == "eager"                 # auto on a CPU
    assert has_static_cache(gpt(4)) and has_static_cache(gpt2())

    class NoStatic(torch.nn.Module):
        vocab_size, sequence_len = 300, 64

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def new_cache(self, batch_size, max_len):
            return None

    assert not has_static_cache(NoStatic()) and Engine(NoStatic(), _Ids()).decode == "eager"
    with pytest.raises(GptlabError, match="no static KV cache"):
        Engine(NoStatic(), _Ids(), decode="static")
    with pytest.raises(GptlabError, match="decode mode 'fast'"):
        Engine(gpt(4), _Ids(), decode="fast")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", MODELS)
def test_cuda_graph_decoding_gives_the_eager_tokens(name):
    """On a GPU: the captured graph (checked against its eager step at capture) decodes the eager path's
    greedy tokens, and the engine keeps the graph (no fallback note)."""
    m, ps = MODELS[name]().cuda(), prompts()
    n = len(ps)
    engine = Engine(m, _Ids())
    assert engine.decode == "graph"
    got = engine.run_batch(ps, [0.0] * n, list(range(n)), 30)
    assert engine.decode == "graph" and not engine.notes
    want = Engine(m, _Ids(), decode="eager").run_batch(ps, [0.0] * n, list(range(n)), 30)
    assert [c.tokens for c in got] == [c.tokens for c in want]
