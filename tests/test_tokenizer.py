"""BPE training, the tiktoken fast path's exactness, bytes per token, and `gptlab tokenizer train`."""

import json

import pytest

from conftest import ROOT, TINY, run_gptlab
from gptlab.data import iter_documents
from gptlab.errors import GptlabError
from gptlab.tokenizer import BOS, HFTokenizer, TiktokenTokenizer, load_tokenizer, train_bpe, train_tokenizer_from_config

CORPUS = ROOT / "gptlab" / "corpus"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    texts = [t for f in sorted(CORPUS.glob("*.train.jsonl")) for t in iter_documents(f)]
    out = tmp_path_factory.mktemp("tok")
    return train_bpe(texts, 1024, out)


def test_trained_vocab_has_bos_last_and_bytes_first(trained):
    tok = load_tokenizer(trained)
    assert isinstance(tok, TiktokenTokenizer)
    assert tok.vocab_size == 1024 and tok.bos_id == 1023
    tb = tok.token_bytes()
    assert tb[tok.bos_id] == 0
    assert (tb[:1023] >= 1).all()


def test_tiktoken_path_equals_tokenizers_on_every_val_document(trained):
    fast, ref = load_tokenizer(trained), HFTokenizer.from_file(trained)
    docs = [t for f in sorted(CORPUS.glob("*.val.jsonl")) for t in iter_documents(f)]
    assert fast.encode_batch(docs) == ref.encode_batch(docs)


def test_roundtrip_and_bytes_sum_to_utf8_length(trained):
    tok = load_tokenizer(trained)
    text = "Revenue rose 12.5% to $1,234 million — Ünïcödé 中文 🙂\n\tdef f(x):\n        return x"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert int(tok.token_bytes()[ids].sum()) == len(text.encode("utf-8"))
    assert tok.identity() == load_tokenizer(trained).identity()


def test_too_small_vocab_and_bad_file(tmp_path):
    with pytest.raises(GptlabError, match="too small"):
        train_bpe(["abc"], 100, tmp_path)
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(GptlabError, match="not a valid tokenizer.json"):
        load_tokenizer(bad)


def test_tokenizer_train_command(tmp_path):
    r = run_gptlab("tokenizer", "train", TINY, "--vocab-size", "600", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    spec = json.loads((tmp_path / "tokenizer.json").read_text())
    assert spec["added_tokens"][-1]["content"] == BOS
    assert load_tokenizer(tmp_path).vocab_size == 600


def test_sentencepiece_style_token_bytes_count_the_word_space(tmp_path):
    """Metaspace ('▁' marks a word-initial space), as Llama-style tokenizer.json files have."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(["the cat sat on the mat"] * 50 + ["a dog ran far"] * 50,
                            trainers.BpeTrainer(vocab_size=60, special_tokens=["<s>"]))
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    hf = HFTokenizer.from_file(path)
    text = "the dog sat on the cat"
    ids = hf.encode(text)
    assert hf.decode(ids) == text
    # every word carries its space ("▁the"): the prepended one included, so one byte more than the text
    assert int(hf.token_bytes()[ids].sum()) == len(text.encode()) + 1


def _config_with_train_chars(tmp_path, chars):
    path = tmp_path / "small_tok.toml"
    path.write_text(TINY.read_text().replace("train_chars = 300_000", f"train_chars = {chars}"))
    assert f"train_chars = {chars}" in path.read_text()
    return path


def test_tokenizer_train_defaults_to_the_configs_train_chars(tmp_path):
    """Like `gptlab train`, `gptlab tokenizer train` reads tokenizer.train_chars unless --max-chars is given."""
    cfg = _config_with_train_chars(tmp_path, 20_000)
    default = load_tokenizer(train_tokenizer_from_config(cfg, tmp_path / "default", vocab_size=300))
    same = load_tokenizer(train_tokenizer_from_config(cfg, tmp_path / "same", vocab_size=300, max_chars=20_000))
    more = load_tokenizer(train_tokenizer_from_config(cfg, tmp_path / "more", vocab_size=300,
                                                      max_chars=10_000_000))
    assert default.identity() == same.identity() != more.identity()
    r = run_gptlab("tokenizer", "train", cfg, "--vocab-size", "300", "--out", tmp_path / "cli")
    assert r.returncode == 0, r.stderr
    assert load_tokenizer(tmp_path / "cli").identity() == default.identity()


@pytest.mark.parametrize("chars", [0, -1])
def test_tokenizer_train_refuses_max_chars_below_one(tmp_path, chars):
    with pytest.raises(GptlabError, match="--max-chars"):
        train_tokenizer_from_config(TINY, tmp_path / "lib", vocab_size=300, max_chars=chars)
    assert not (tmp_path / "lib").exists()
    r = run_gptlab("tokenizer", "train", TINY, "--vocab-size", "300", "--max-chars", chars, "--out", tmp_path / "cli")
    err = r.stderr.strip()
    assert r.returncode == 2 and len(err.splitlines()) == 1 and err.startswith("gptlab: error: --max-chars"), err
    assert not (tmp_path / "cli" / "tokenizer.json").exists()


def test_tokenizer_train_refuses_a_config_train_chars_below_one(tmp_path):
    cfg = _config_with_train_chars(tmp_path, 0)
    with pytest.raises(GptlabError, match="tokenizer.train_chars must be at least 1"):
        train_tokenizer_from_config(cfg, tmp_path / "out", vocab_size=300)


def _one_line(r):
    err = r.stderr.strip()
    assert r.returncode == 2 and len(err.splitlines()) == 1 and err.startswith("gptlab: error:"), err
    return err


def test_tokenizer_train_into_an_unwritable_folder_is_one_line(tmp_path):
    err = _one_line(run_gptlab("tokenizer", "train", TINY, "--vocab-size", "300", "--out", "/proc/foo"))
    assert "/proc/foo" in err and "cannot write" in err
    with pytest.raises(GptlabError, match="/proc/foo"):
        train_bpe(["abc abc"], 300, "/proc/foo")


@pytest.fixture
def read_only_folder(tmp_path):
    import subprocess
    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(["mount", "--bind", str(ro), str(ro)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot bind-mount here ({r.stderr.strip()})")
    try:
        r = subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot remount read-only here ({r.stderr.strip()})")
        yield ro
    finally:
        subprocess.run(["umount", str(ro)])


def test_tokenizer_train_into_a_read_only_mount_is_one_line(read_only_folder):
    err = _one_line(run_gptlab("tokenizer", "train", TINY, "--vocab-size", "300", "--max-chars", "1000",
                               "--out", read_only_folder))
    assert str(read_only_folder) in err and "Read-only file system" in err
    err = _one_line(run_gptlab("tokenizer", "train", TINY, "--vocab-size", "300", "--max-chars", "1000",
                               "--out", read_only_folder / "sub"))
    assert "Read-only file system" in err
    assert not list(read_only_folder.iterdir())


def test_a_tokenizer_is_never_written_from_no_text(tmp_path):
    with pytest.raises(GptlabError, match="no text"):
        train_bpe(iter([]), 300, tmp_path / "empty")
    assert not (tmp_path / "empty" / "tokenizer.json").exists()
