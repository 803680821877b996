"""The restricted unpickler: reads nanochat's tokenizer.pkl and nanoGPT's meta.pkl, refuses anything that runs."""

import os
import pickle
import pickletools
from pathlib import Path

import pytest

from gptlab.checkpoints.nanochat import load_tokenizer
from gptlab.checkpoints.safe_pickle import EncodingState, load_pickle, load_torch
from gptlab.errors import GptlabError

PEERS = Path(__file__).parent / "fixtures" / "peers"
TOK_DIR = PEERS / "nanochat" / "base_dir" / "tokenizer"
VAL = (PEERS / "text" / "val.txt").read_text()


def test_nanochat_tokenizer_pickle_is_read_without_tiktoken_and_encodes_identically():
    state = load_pickle(TOK_DIR / "tokenizer.pkl")
    assert type(state) is EncodingState
    name, pat, ranks, special = state.ranks_and_specials("x")
    assert (name, len(ranks), special["<|bos|>"]) == ("rustbpe", 2039, 2039)
    ours = load_tokenizer(TOK_DIR)
    with open(TOK_DIR / "tokenizer.pkl", "rb") as f:   # the trusted fixture, unpickled for real as a reference
        theirs = pickle.load(f)
    text = VAL[:20000] + " ünïcödé 中文 🙂"
    assert ours.encode(text) == theirs.encode_ordinary(text)
    assert ours.vocab_size == theirs.n_vocab == 2048


def test_nanogpt_meta_pickle_is_plain_data():
    meta = load_pickle(PEERS / "nanogpt" / "data" / "pystdlib_char" / "meta.pkl")
    assert meta["vocab_size"] == 96 and meta["itos"][0] == "\n" and meta["stoi"]["~"] == 95


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# What nanochat's file starts with: PROTO 4, the global tiktoken.core.Encoding, an empty tuple, NEWOBJ
ENCODING_PRELUDE = b"\x80\x04\x8c\x0dtiktoken.core\x8c\x08Encoding\x93)\x81"


def _encoding_pickle(state_pickle: bytes) -> bytes:
    """An Encoding pickle whose BUILD state is `state_pickle` (a protocol-3 pickle, PROTO and STOP removed)."""
    return ENCODING_PRELUDE + state_pickle[2:-1] + b"b."


def _assert_refused(path, marker, what):
    with pytest.raises(GptlabError, match=f"{path.name}: refusing to unpickle {what}"):
        load_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_reduce_to_os_system_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "tokenizer.pkl"
    path.write_bytes(pickle.dumps(_RunsCode(marker), protocol=protocol))
    assert any(op.name in ("GLOBAL", "STACK_GLOBAL") for op, _, _ in pickletools.genops(path.read_bytes()))
    _assert_refused(path, marker, r"(posix|os|nt)\.system")
    pickle.loads(path.read_bytes())          # the control: a plain unpickler does run it
    assert marker.exists()


def test_malicious_object_hidden_inside_an_encoding_state_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    state = {"name": "x", "pat_str": ".", "mergeable_ranks": {b"a": 0}, "special_tokens": _RunsCode(marker)}
    path = tmp_path / "tokenizer.pkl"
    path.write_bytes(_encoding_pickle(pickle.dumps(state, protocol=3)))
    _assert_refused(path, marker, r"(posix|os|nt)\.system")


def test_builtins_eval_and_subprocess_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    for module, name in (("builtins", "eval"), ("subprocess", "Popen"), ("tiktoken.core", "_unsafe")):
        path = tmp_path / "meta.pkl"
        path.write_bytes(f"c{module}\n{name}\n(S'open(\"{marker}\", \"w\")'\ntR.".encode())
        _assert_refused(path, marker, f"{module}.{name}")


def test_truncated_pickle_and_registry_reference_are_clear_errors(tmp_path):
    path = tmp_path / "tokenizer.pkl"
    path.write_bytes((TOK_DIR / "tokenizer.pkl").read_bytes()[:5000])
    with pytest.raises(GptlabError, match="not a readable pickle"):
        load_pickle(path)
    # tiktoken pickles its registered encodings (gpt2, cl100k_base) by name only: no ranks to read
    path.write_bytes(_encoding_pickle(pickle.dumps("gpt2", protocol=3)))
    with pytest.raises(GptlabError, match="registered encoding 'gpt2' by name only"):
        load_pickle(path).ranks_and_specials(path)


def test_torch_files_holding_objects_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt.pt"
    import torch
    torch.save({"model": {}, "x": _RunsCode(marker)}, path)
    with pytest.raises(GptlabError, match="ckpt.pt: cannot read weights.*weights_only"):
        load_torch(path)
    assert not marker.exists()


def test_mapped_loads_fall_back_to_reading_legacy_files_and_still_refuse_code(tmp_path):
    import torch
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(3)}, legacy, _use_new_zipfile_serialization=False)   # cannot be memory-mapped
    assert torch.equal(load_torch(legacy, mmap=True)["w"], torch.ones(3))
    marker = tmp_path / "pwned"
    torch.save({"x": _RunsCode(marker)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(GptlabError, match="legacy.pt: cannot read weights.*weights_only"):
        load_torch(legacy, mmap=True)
    assert not marker.exists()
