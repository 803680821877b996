"""The sampling engine: cached decoding equals recomputation, seeds make texts independent of the batch,
shorter samples are prefixes of longer ones, and temperature / top-k / top-p sample what they promise."""

import itertools
from pathlib import Path

import pytest
import torch

from gptlab.checkpoints import discover, load
from gptlab.data import iter_documents
from gptlab.engine import Engine, Request, invert_cdf, plan_batches, row_seed, sample_tokens, uniforms
from gptlab.errors import GptlabError
from gptlab.models.gpt import GPT, GPTConfig
from gptlab.models.gpt2 import GPT2, GPT2Config
from gptlab.tokenizer import load_tokenizer, train_bpe


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    corpus = Path(__file__).resolve().parent.parent / "gptlab" / "corpus"
    docs = list(itertools.islice(iter_documents(corpus / "code_python.val.jsonl"), 4)) + \
        list(itertools.islice(iter_documents(corpus / "web_en.val.jsonl"), 1))
    return load_tokenizer(train_bpe(docs, 384, tmp_path_factory.mktemp("tok")))


def _gpt(vocab, seq=96, seed=0):
    torch.manual_seed(seed)           # PyTorch's default init: peaked logits, unlike init_weights' tiny head
    return GPT(GPTConfig(n_layer=2, n_embd=64, n_head=2, n_kv_head=1, vocab_size=vocab, sequence_len=seq)).eval()


def _gpt2(vocab, seq=96):
    return GPT2(GPT2Config(vocab_size=vocab, sequence_len=seq, n_layer=2, n_head=2, n_embd=64)).init_random(0).eval()


@pytest.fixture(scope="module", params=["gptlab", "gpt2"])
def engine(request, tok):
    model = _gpt(tok.vocab_size) if request.param == "gptlab" else _gpt2(tok.vocab_size)
    return Engine(model, tok, stop_ids=[])


PROMPTS = ["def quicksort(arr):", "import os\nimport sys\n\ndef main():\n    ", "The water", "x"]


@torch.no_grad()
def test_cached_logits_equal_recompute(engine, tok):
    ids = torch.tensor([[tok.bos_id] + tok.encode(PROMPTS[1])])
    full = engine.model(ids)                                                     # (1, T, V), no cache
    cache = engine.model.new_cache(1, ids.shape[1])
    pre = engine.model(ids[:, :5], cache)
    steps = [engine.model(ids[:, t:t + 1], cache) for t in range(5, ids.shape[1])]
    stepped = torch.cat([pre] + steps, dim=1)
    assert torch.allclose(stepped, full, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_greedy_decode_equals_recompute_without_cache(engine, tok):
    got = engine.generate([Request(p, 0.0) for p in PROMPTS], 20)
    for p, c in zip(PROMPTS, got):
        x = torch.tensor([[tok.bos_id] + tok.encode(p)])
        for _ in range(20):
            x = torch.cat([x, engine.model(x)[:, -1].argmax(-1, keepdim=True)], dim=1)
        assert c.tokens == x[0, c.prompt_tokens:].tolist()


def test_text_independent_of_batch_composition(engine):
    reqs = [Request(PROMPTS[0], 0.8, row_seed(0, "a", i)) for i in range(3)] + \
           [Request(p, 0.8, row_seed(0, p, 0)) for p in PROMPTS[1:]] + [Request(PROMPTS[2], 0.0, 5)]
    together = [c.tokens for c in engine.generate(reqs, 24)]
    alone = [engine.generate([r], 24)[0].tokens for r in reqs]
    reversed_small = engine.generate(reqs[::-1], 24, batches=[[0, 3], [1], [2, 4, 5, 6]])
    assert together == alone == [c.tokens for c in reversed_small][::-1]
    assert len({tuple(t) for t in together[:3]}) == 3          # different seeds, different samples


def test_shorter_sample_is_prefix_of_longer(engine):
    reqs = [Request(p, 0.9, row_seed(1, p)) for p in PROMPTS]
    short, long = engine.generate(reqs, 10), engine.generate(reqs, 40)
    for s, l in zip(short, long):
        assert len(s.tokens) == 10 and len(l.tokens) == 40 and l.tokens[:10] == s.tokens


def test_stop_token_ends_the_completion(tok):
    model = _gpt(tok.vocab_size)
    free = Engine(model, tok, stop_ids=[]).generate([Request(PROMPTS[0], 0.0)], 12)[0]
    stop = free.tokens[5]
    first = free.tokens.index(stop)
    got = Engine(model, tok, stop_ids=[stop]).generate([Request(PROMPTS[0], 0.0)], 12)[0]
    assert got.tokens == free.tokens[:first] and got.stopped and not free.stopped


def test_prompt_is_cropped_from_the_left_keeping_bos(tok):
    e = Engine(_gpt(tok.vocab_size, seq=32), tok, stop_ids=[])
    long_prompt = "def f(x):\n    return x + 1\n" * 10
    ids, cropped, n_new = e.fit(long_prompt, 20)
    body = tok.encode(long_prompt)
    assert ids[0] == tok.bos_id and ids[1:] == body[cropped:] and cropped > 0
    assert len(ids) + n_new <= 32 and n_new == 20
    ids, _, n_new = e.fit(long_prompt, 30)       # too long to keep a quarter of the context: generate less
    assert len(ids) == 8 and n_new == 24
    c = e.generate([Request(long_prompt, 0.8)], 20)[0]
    assert c.cropped == len(body) - 11 and len(c.tokens) == 20


def test_stream_pieces_make_the_text(tok):
    e = Engine(_gpt(tok.vocab_size), tok, stop_ids=[])
    pieces = []
    c = e.stream(PROMPTS[0], 25, pieces.append, temperature=0.8, seed=3)
    assert "".join(pieces) == tok.decode(c.tokens) and len(pieces) > 1
    assert c.tokens == e.generate([Request(PROMPTS[0], 0.8, 3)], 25)[0].tokens


def test_uniforms_depend_only_on_seed_and_position():
    a = uniforms([11, 22, 33], 50)
    assert (a[1] == uniforms([22], 50)[0]).all() and (a[:, :20] == uniforms([11, 22, 33], 20)).all()
    assert ((a > 0) & (a < 1)).all() and abs(uniforms(range(200), 200).mean() - 0.5) < 0.01
    assert not (a[0] == a[1]).all()


def _grid(n):
    return (torch.arange(n, dtype=torch.float32) + 0.5) / n       # evenly spread u: exact frequencies


def test_sampling_follows_temperature_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    n = 20000
    u = _grid(n)
    for t in (0.5, 1.0, 2.0):
        got = sample_tokens(logits.expand(n, 4).clone(), torch.full((n,), t), u)
        freq = torch.bincount(got, minlength=4).float() / n
        assert torch.allclose(freq, torch.softmax(logits / t, -1), atol=1e-3)
    greedy = sample_tokens(logits.expand(8, 4).clone(), torch.zeros(8), _grid(8))
    assert (greedy == 0).all()


def test_two_level_inversion_matches_one_scan_and_skips_zero_weights():
    """A vocabulary of 5,000 (not a multiple of the block) with a third of its weights zero, as masked or
    padded ids are: the block-wise inversion picks what one float64 scan picks, and never a zero weight."""
    g = torch.Generator().manual_seed(0)
    w = torch.rand(64, 5000, generator=g) ** 4
    w[torch.rand(64, 5000, generator=g) < 0.33] = 0
    w[:, 4900:] = 0                                         # a tail of padded ids
    u = torch.rand(64, generator=g).clamp(1e-6, 1 - 1e-6)
    u[0], u[1] = 1e-9, 1 - 1e-7                             # the very first and very last positive weight
    got = invert_cdf(w, u).squeeze(1)
    cdf = w.double().cumsum(-1)
    want = torch.searchsorted(cdf, (u.double() * cdf[:, -1])[:, None]).squeeze(1)
    assert (w.gather(1, got[:, None]) > 0).all()
    assert (got == want).float().mean() >= 0.98             # float32 vs float64 may differ at a boundary
    assert got[0] == (w[0] > 0).nonzero()[0, 0] and got[1] == (w[1] > 0).nonzero()[-1, 0]
    big = torch.full((1, 5000), float("-inf"))
    big[0, 4321] = 3.0
    assert sample_tokens(big, torch.ones(1), torch.tensor([0.5])).item() == 4321


def test_top_k_and_top_p_restrict_the_candidates():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])
    logits = probs.log().expand(10000, 4).clone()
    t, u = torch.ones(10000), _grid(10000)
    k2 = torch.bincount(sample_tokens(logits, t, u, top_k=2), minlength=4).float() / 10000
    assert torch.allclose(k2, torch.tensor([0, 0.5 / 0.8, 0, 0.3 / 0.8]), atol=1e-3)
    p = torch.bincount(sample_tokens(logits, t, u, top_p=0.9), minlength=4).float() / 10000   # 0.5+0.3+0.15
    assert torch.allclose(p, torch.tensor([0, 0.5, 0.15, 0.3]) / 0.95, atol=1e-3)
    assert (sample_tokens(logits, t, u, top_k=1) == 1).all()
    assert (sample_tokens(logits, t, u, top_p=0.01) == 1).all()


def test_plan_batches_groups_by_length_and_caps_rows():
    lengths = [5, 50, 6, 7, 52, 5, 90]
    plan = plan_batches(lengths, max_new=40, max_rows=3)
    assert sorted(i for b in plan for i in b) == list(range(7))
    assert all(len(b) <= 3 and max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 10 for b in plan)
    assert plan == plan_batches(lengths, max_new=40, max_rows=3)


def test_bad_sampling_parameters_are_one_line_errors(tok):
    e = Engine(_gpt(tok.vocab_size), tok)
    for kwargs, word in (({"top_k": 0}, "top-k"), ({"top_p": 1.5}, "top-p")):
        with pytest.raises(GptlabError, match=word):
            e.generate([Request("x")], 5, **kwargs)
    with pytest.raises(GptlabError, match="temperature"):
        e.generate([Request("x", -0.5)], 5)


PEERS = Path(__file__).resolve().parent / "fixtures" / "peers"
FAMILIES = ["nanochat/base_dir/base_checkpoints/d2", "nanogpt/out-pystdlib-char", "llmc/gpt2_tiny.bin",
            "hf_gpt2/trained_200steps"]


@pytest.mark.parametrize("where", FAMILIES)
def test_every_family_samples_the_same_alone_and_batched(where):
    if not (PEERS / where).exists():
        pytest.skip(f"peer checkpoint {where} missing from tests/fixtures/peers")
    loaded = load(discover(PEERS / where)[-1])
    e = Engine(loaded.model, loaded.tokenizer)
    reqs = [Request("def quicksort(arr):", 0.8, i) for i in range(3)] + [Request("import os\n", 0.0)]
    together = [c.tokens for c in e.generate(reqs, 16)]
    assert together == [e.generate([r], 16)[0].tokens for r in reqs]
    ids, _, _ = e.fit("import os\n", 16)
    x = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(len(together[3])):
            x = torch.cat([x, loaded.model(x)[:, -1, :e.vocab].argmax(-1, keepdim=True)], dim=1)
    assert x[0, len(ids):].tolist() == together[3]
