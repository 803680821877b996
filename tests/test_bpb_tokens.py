"""nanoGPT's val.bin and llm.c's data .bin as `--bpb` sources (gptlab/evaluate/bpb_tokens.py).

    python -m pytest tests/test_bpb_tokens.py
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_gptlab
from gptlab.checkpoints import discover, load
from gptlab.errors import GptlabError
from gptlab.evaluate.bpb import score_documents
from gptlab.evaluate.bpb_tokens import decode_documents, read_ids

PEERS = Path(__file__).parent / "fixtures" / "peers"
NANOGPT = PEERS / "nanogpt"
VAL_BIN = NANOGPT / "data" / "pystdlib_char" / "val.bin"
VAL_TXT = (PEERS / "text" / "val.txt").read_text()


@pytest.fixture(scope="module")
def char_model():
    return load(discover(str(NANOGPT / "out-pystdlib-char"))[0])


def test_val_bin_decodes_to_its_text_and_matches_nanogpts_own_loss(char_model):
    docs = decode_documents(VAL_BIN, char_model.tokenizer)
    assert docs == [VAL_TXT]                              # char-level: no separator, one document
    ref = json.loads((NANOGPT / "reference.json").read_text())["full_val"]
    # nanoGPT's windows: non-overlapping, T=64, targets val[1:49985] == gptlab's windows with stride = context
    got = score_documents(char_model.model, char_model.tokenizer, [docs[0][:ref["num_targets"] + 1]], stride=64)
    assert got.bytes == ref["num_bytes"] == len(VAL_TXT[1:ref["num_targets"] + 1].encode())
    assert got.nll == pytest.approx(ref["sum_nll_nats"], rel=1e-6)
    assert got.bpb == pytest.approx(ref["bits_per_byte"], rel=1e-6)   # = mean CE nats / ln 2 (1 byte per char)


def test_eval_cli_scores_a_val_bin_and_keys_it_by_content(tmp_path):
    nano = tmp_path / "nanogpt"
    shutil.copytree(NANOGPT / "out-pystdlib-char", nano / "out-pystdlib-char")
    shutil.copytree(NANOGPT / "data", nano / "data")
    val = nano / "data" / "pystdlib_char" / "val.bin"
    db = tmp_path / "s.sqlite"
    args = ("eval", nano / "out-pystdlib-char", "--db", db, "--no-probes", "--json", "--bpb", f"code={val}")
    r = run_gptlab(*args)
    assert r.returncode == 0, r.stderr
    (row,) = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert row["domain"] == "code" and row["bytes"] == len(VAL_TXT) - 1   # the first char is context only
    assert 3.6 < row["bpb"] < 3.9
    assert run_gptlab(*args).stdout == r.stdout                          # cached: same bytes, same key
    np.asarray(read_ids(VAL_BIN))[:1000].astype("<u2").tofile(val)      # other content -> scored again
    again = json.loads(run_gptlab(*args).stdout)
    assert again["bytes"] == 999 and again["bpb"] != row["bpb"]


@pytest.mark.parametrize("content, words", [
    (b"\x01\x00\x02", "odd size"),
    (b"", "no token ids"),
    (np.array([1, 2, 96, 3], dtype="<u2").tobytes(), "token id 96 at position 2"),
])
def test_bad_token_file_is_one_line_naming_it(tmp_path, content, words):
    bad = tmp_path / "val.bin"
    bad.write_bytes(content)
    r = run_gptlab("eval", NANOGPT / "out-pystdlib-char", "--db", tmp_path / "x.sqlite", "--no-probes",
                   "--bpb", f"code={bad}")
    assert r.returncode == 2 and r.stdout == "", r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("gptlab: error:")]   # after any progress line
    assert len(errors) == 1 and r.stderr.endswith(errors[0] + "\n"), r.stderr
    assert str(bad) in errors[0] and words in errors[0]


def test_llmc_header_is_read_and_checked(tmp_path):
    ids = read_ids(PEERS / "llmc" / "stdlib_val.bin")
    assert len(ids) == 12567 and ids[0] == 50256                      # header skipped; EOT starts a document
    short = tmp_path / "short.bin"
    short.write_bytes((PEERS / "llmc" / "stdlib_val.bin").read_bytes()[:-2])
    with pytest.raises(GptlabError, match="llm.c data header"):
        read_ids(short)


def test_llmc_val_bin_splits_on_eot_and_is_near_llmcs_own_number():
    m = load(discover(str(PEERS / "llmc" / "gpt2_tiny.bin"))[0])
    docs = decode_documents(PEERS / "llmc" / "stdlib_val.bin", m.tokenizer)
    assert len(docs) == 4 and "".join(docs) == VAL_TXT                 # the 4 stdlib files of val.txt
    got = score_documents(m.model, m.tokenizer, docs)
    want = json.loads((PEERS / "llmc" / "reference.json").read_text())
    assert got.bytes == len(VAL_TXT.encode())
    # llm.c's 2.61605 uses windows that cross documents; gptlab scores each document from its <|endoftext|>
    assert got.bpb == pytest.approx(2.6160491851900725, rel=5e-3), want.keys()
