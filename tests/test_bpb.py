"""The bits-per-byte protocol: windows, bytes, batching, streaming, and agreement with transformers/nanochat."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gptlab.checkpoints import discover, load
from gptlab.errors import GptlabError
from gptlab.evaluate.bpb import read_documents, score_documents, windows
from gptlab.models.gpt2 import GPT2, config_from_hf, from_hf_state_dict
from gptlab.tokenizer import CharTokenizer, HFTokenizer

PEERS = Path(__file__).parent / "fixtures" / "peers"
VAL = (PEERS / "text" / "val.txt").read_text()
MANIFEST = json.loads((PEERS / "text" / "manifest.json").read_text())
DOCS = [VAL[f["start"]:f["end"]] for f in MANIFEST["val"]]          # the 4 stdlib files of val.txt


@pytest.mark.parametrize("n,context,stride", [(1, 8, 4), (2, 8, 4), (9, 8, 4), (10, 8, 4), (37, 8, 3),
                                              (37, 8, 8), (100, 16, 1), (5, 16, 8)])
def test_windows_score_every_target_once_with_enough_context(n, context, stride):
    seen = []
    for start, end, first in windows(n, context, stride):
        assert 0 <= start <= first + start < end <= n - 1 and end - start <= context
        targets = list(range(start + first + 1, end + 1))
        seen += targets
        if start > 0:   # a later window: every scored target has at least context - stride tokens before it
            assert min(t - start for t in targets) >= context - stride
    assert seen == list(range(1, n))


def test_bad_stride_is_refused():
    with pytest.raises(GptlabError, match="stride 9"):
        list(windows(20, 8, 9))


@pytest.fixture(scope="module")
def gpt2_pair():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=512, n_positions=64, n_embd=32, n_layer=2, n_head=2)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    ours = GPT2.from_state_dict(config_from_hf(cfg), from_hf_state_dict(hf.state_dict(), config_from_hf(cfg)))
    return hf, ours, HFTokenizer.from_file(PEERS / "hf_gpt2" / "tokenizer.json")


def _transformers_bpb(hf, tok, docs, context, stride):
    """The same windows scored from transformers' own logits, summed in the most direct way."""
    tb = torch.as_tensor(tok.token_bytes())
    nats, nbytes = 0.0, 0
    for doc in docs:
        ids = [tok.bos_id] + tok.encode(doc)
        for start, end, first in windows(len(ids), context, stride):
            x = torch.tensor([ids[start:end]])
            y = torch.tensor(ids[start + first + 1:end + 1])
            with torch.no_grad():
                logits = hf(input_ids=x).logits[0, first:]
            nats += F.cross_entropy(logits, y, reduction="sum").item()
            nbytes += int(tb[y].sum())
    return nats / (math.log(2) * nbytes), nbytes


def test_gpt2_bpb_equals_transformers_on_the_same_windows(gpt2_pair):
    hf, ours, tok = gpt2_pair
    docs = DOCS + ["short one", "x"]
    got = score_documents(ours, tok, docs, batch_size=8)
    want, nbytes = _transformers_bpb(hf, tok, docs, 64, 32)
    assert got.bytes == nbytes == sum(len(d.encode()) for d in docs)
    assert abs(got.bpb - want) < 1e-4
    assert [d.bytes for d in got.docs] == [len(d.encode()) for d in docs]


def test_batch_size_and_padding_do_not_change_scores(gpt2_pair):
    _, ours, tok = gpt2_pair
    docs = [DOCS[3][:3000], "a", "", "tiny doc", DOCS[1][:700]]
    one = score_documents(ours, tok, docs, batch_size=1)
    many = score_documents(ours, tok, docs, batch_size=16)
    assert [(d.bytes, d.tokens) for d in one.docs] == [(d.bytes, d.tokens) for d in many.docs]
    for a, b in zip(one.docs, many.docs):
        assert a.nll == pytest.approx(b.nll, rel=1e-5, abs=1e-6)
    assert one.docs[2] == many.docs[2] and one.docs[2].tokens == 0     # an empty document scores nothing


def test_head_chunks_and_the_logits_path_give_the_same_scores(gpt2_pair, monkeypatch):
    """Our models run the head on scored positions only, in CE_ROWS chunks; a model that only returns
    logits (as transformers does) takes the cross-entropy path. Chunk size and path must not matter."""
    import gptlab.evaluate.bpb as bpb

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.vocab_size, self.sequence_len = inner, inner.vocab_size, inner.sequence_len

        def forward(self, idx):
            return self.inner(idx)

    _, ours, tok = gpt2_pair
    docs = [DOCS[3][:3000], "tiny doc", "another short document, with punctuation!"]
    whole = score_documents(ours, tok, docs, batch_size=4)
    monkeypatch.setattr(bpb, "CE_ROWS", 7)
    chunked = score_documents(ours, tok, docs, batch_size=4)
    plain = score_documents(LogitsOnly(ours), tok, docs, batch_size=4)
    for a, b, c in zip(whole.docs, chunked.docs, plain.docs):
        assert (a.bytes, a.tokens) == (b.bytes, b.tokens) == (c.bytes, c.tokens)
        assert a.nll == pytest.approx(b.nll, rel=1e-5) and a.nll == pytest.approx(c.nll, rel=1e-5)


def test_longer_stride_means_less_context_and_same_bytes(gpt2_pair):
    _, ours, tok = gpt2_pair
    half = score_documents(ours, tok, [DOCS[0]])
    full = score_documents(ours, tok, [DOCS[0]], stride=64)
    assert (half.bytes, half.tokens) == (full.bytes, full.tokens)
    assert half.nll != full.nll


def test_documents_stream_through_and_progress_counts_tokens(gpt2_pair):
    _, ours, tok = gpt2_pair
    pulled, at_first_progress, reported = [0], [], []

    def docs():
        for i in range(400):
            pulled[0] += 1
            yield f"document {i}: " + "x = 1\n" * (i % 7)

    def progress(n):
        if not at_first_progress:
            at_first_progress.append(pulled[0])
        reported.append(n)

    got = score_documents(ours, tok, docs(), batch_size=4, progress=progress)
    assert len(got.docs) == 400 and sum(reported) == got.tokens
    assert at_first_progress[0] < 400          # scoring began before the input was exhausted


def test_char_tokenizer_without_bos_leaves_the_first_char_unscored():
    torch.manual_seed(0)
    from gptlab.models.gpt2 import GPT2Config
    tok = CharTokenizer({i: c for i, c in enumerate("abcé\n")})
    model = GPT2(GPT2Config(vocab_size=5, sequence_len=8, n_layer=1, n_head=1, n_embd=8)).init_random()
    got = score_documents(model, tok, ["abcé\nab", "éa"])
    assert [(d.tokens, d.bytes) for d in got.docs] == [(6, 7), (1, 1)]   # 'é' is 2 bytes, unscored in doc 2


def test_bf16_compute_is_close_to_fp32(gpt2_pair):
    _, ours, tok = gpt2_pair
    import copy
    fp32 = score_documents(copy.deepcopy(ours), tok, [DOCS[2][:2000]])
    bf16 = score_documents(copy.deepcopy(ours), tok, [DOCS[2][:2000]], dtype=torch.bfloat16)
    assert bf16.bpb == pytest.approx(fp32.bpb, rel=2e-2)


def test_nothing_to_score_and_a_foreign_tokenizer_are_errors(gpt2_pair):
    _, ours, tok = gpt2_pair
    with pytest.raises(GptlabError, match="nothing to score"):
        score_documents(ours, tok, ["", ""])
    big = CharTokenizer({i: chr(0x4e00 + i) for i in range(600)})
    with pytest.raises(GptlabError, match="600 ids but the model predicts only 512"):
        score_documents(ours, big, ["abc"])


def test_nanochat_windows_equal_evaluate_bpb_definition():
    """Sliding windows scored by score_documents == nanochat's evaluate_bpb formula on the same batches."""
    lm = load(discover(PEERS / "nanochat" / "base_dir" / "base_checkpoints" / "d2")[0])
    tok, model = lm.tokenizer, lm.model
    docs = [DOCS[0], DOCS[3][:1500]]
    got = score_documents(model, tok, docs, batch_size=3)
    token_bytes = torch.as_tensor(tok.token_bytes(), dtype=torch.int64)
    total_nats, total_bytes = torch.tensor(0.0), torch.tensor(0)
    for doc in docs:
        ids = [tok.bos_id] + tok.encode(doc)
        for start, end, first in windows(len(ids), 256, 128):
            x = torch.tensor([ids[start:end]])
            y = torch.tensor([ids[start + 1:end + 1]])
            y[:, :first] = -1                                   # nanochat's ignore_index for unscored positions
            with torch.no_grad():
                loss2d = F.cross_entropy(model(x)[0], y[0], ignore_index=-1, reduction="none")
            nb = torch.where(y[0] >= 0, token_bytes[y[0].clamp(min=0)], 0)
            total_nats += (loss2d * (nb > 0)).sum()
            total_bytes += nb.sum()
    want = total_nats.item() / (math.log(2) * total_bytes.item())
    assert got.bytes == total_bytes.item()
    assert got.bpb == pytest.approx(want, rel=1e-5)


def test_read_documents_txt_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("héllo\nworld\n")
    assert list(read_documents(tmp_path / "a.txt")) == ["héllo\nworld\n"]
    (tmp_path / "b.jsonl").write_text('{"text": "one"}\n\n{"text": "two", "id": 3}\n')
    assert list(read_documents(tmp_path / "b.jsonl")) == ["one", "two"]


@pytest.mark.parametrize("name,content,match", [
    ("empty.txt", b"", "empty.txt: the file is empty"),
    ("empty.jsonl", b"\n\n", "empty.jsonl: the file is empty"),
    ("notext.jsonl", b'{"text": "ok"}\n{"body": "x"}\n', r"notext.jsonl:2: no \"text\""),
    ("broken.jsonl", b'{"text": "ok"}\n{"text": \n', "broken.jsonl:2: not valid JSON"),
    ("latin1.txt", "caf\xe9".encode("latin-1"), "latin1.txt: not UTF-8"),
    ("data.csv", b"text\n", "unknown corpus format"),
])
def test_read_documents_errors_name_file_and_line(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(GptlabError, match=match):
        list(read_documents(tmp_path / name))
