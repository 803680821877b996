"""Tokenizers: train a byte-level BPE, load one, and encode fast — one interface for every format.

    gptlab tokenizer train demo --out runs/tok      # writes runs/tok/tokenizer.json
    python -m pytest tests/test_tokenizer.py tests/test_faults_train.py

Training uses Hugging Face `tokenizers` (BPE over bytes, split by the GPT-4 style regex nanochat uses, with a
`<|bos|>` document separator as the last id). Encoding then goes through a `tiktoken` Encoding built from the
trained merges (ids = merge ranks), which is faster; `TiktokenTokenizer.from_tokenizer_json` checks on a
probe text that both give identical ids and falls back to `tokenizers` if they ever disagree. A trained
tokenizer.json is written only when training succeeded on some text, whole (temporary file, fsync, rename), with
made_from.json beside it: what made it (content hashes of the train files, train_chars, vocab_size, the recipe),
so that a run reuses it only while those are unchanged (`made_from_differs`).

Every tokenizer knows each token's UTF-8 byte length (`token_bytes`, 0 for special tokens): bits-per-byte
divides by the bytes the scored tokens stand for, which is what makes models with different vocabularies
comparable. Other formats (nanochat's tokenizer.pkl, llm.c's .bin, nanoGPT's char-level meta.pkl) are read in
`gptlab/checkpoints/` and build the same classes.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import tiktoken
import tokenizers
from tokenizers import Regex, decoders, pre_tokenizers, trainers

from gptlab.config import load_config
from gptlab.data import iter_training_text, require_writable, source_hash, write_error
from gptlab.errors import GptlabError

BOS = "<|bos|>"
# GPT-4's split pattern with numbers limited to 1-2 digits, as nanochat uses for small vocabularies.
SPLIT_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|"""
                 r"""\s*[\r\n]|\s+(?!\S)|\s+""")
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's printable-unicode stand-ins for bytes (used by byte-level BPE vocab files), inverted."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return {c: b for b, c in chars.items()}


class Tokenizer:
    """The interface: ids <-> text, the document separator, and bytes per token."""

    name: str = "tokenizer"
    vocab_size: int
    bos_id: int | None          # prepended to every document (BOS / <|endoftext|>); None if the vocab has none

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        raise NotImplementedError

    def token_bytes(self) -> np.ndarray:
        """int32 (vocab_size,): UTF-8 bytes each token stands for; 0 for special tokens."""
        raise NotImplementedError

    def identity(self) -> str:
        """A content hash: equal hashes mean identical tokenization."""
        raise NotImplementedError


class TiktokenTokenizer(Tokenizer):
    """BPE whose merge ranks are the token ids (gptlab, nanochat, llm.c, GPT-2): encoded by tiktoken."""

    def __init__(self, ranks: dict[bytes, int], pat_str: str, special: dict[str, int], bos: str | None,
                 name: str = "bpe"):
        self.name = name
        self._ranks, self._pat, self._special = ranks, pat_str, dict(special)
        self.enc = tiktoken.Encoding(name=name, pat_str=pat_str, mergeable_ranks=ranks,
                                     special_tokens=self._special)
        self.vocab_size = max([*ranks.values(), *special.values()]) + 1
        self.bos_id = special.get(bos) if bos else None
        self._decode_bytes = {i: b for b, i in ranks.items()}

    @property
    def bpe(self) -> tuple[dict[bytes, int], str, dict[str, int]]:
        """(merge ranks, split pattern, special tokens): the whole tokenizer (`gptlab export` writes it out)."""
        return dict(self._ranks), self._pat, dict(self._special)

    def encode(self, text):
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts):
        return self.enc.encode_ordinary_batch(texts, num_threads=4)

    def decode(self, ids):
        return b"".join(self._decode_bytes.get(int(i), b"") for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self):
        out = np.zeros(self.vocab_size, dtype=np.int32)
        for b, i in self._ranks.items():
            out[i] = len(b)
        return out

    def identity(self):
        h = hashlib.sha256(self._pat.encode())
        for b, i in sorted(self._ranks.items(), key=lambda kv: kv[1]):
            h.update(i.to_bytes(4, "little") + len(b).to_bytes(2, "little") + b)
        h.update(json.dumps(sorted(self._special.items())).encode())
        return h.hexdigest()[:16]

    @classmethod
    def from_tokenizer_json(cls, path: str | Path, check_text: str | None = None) -> Tokenizer:
        """A gptlab-trained tokenizer.json as tiktoken, if tiktoken reproduces `tokenizers` exactly."""
        hf = HFTokenizer.from_file(path)
        ranks = hf.byte_level_ranks()
        if ranks is None:
            return hf
        special = {t: i for t, i in hf.special_tokens().items()}
        fast = cls(ranks, SPLIT_PATTERN if hf.uses_split_pattern() else GPT2_PATTERN, special,
                   BOS if BOS in special else None, name=Path(path).parent.name or "bpe")
        probe = check_text or _PROBE_TEXT
        if fast.encode(probe) != hf.encode(probe):
            return hf
        return fast


class HFTokenizer(Tokenizer):
    """Any Hugging Face `tokenizer.json` (used as-is for HF models, and as the fallback for our own)."""

    def __init__(self, tok, source: str):
        self.tok, self.source = tok, source
        self.name = Path(source).parent.name or "hf"
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        special = self.special_tokens()
        bos = next((t for t in (BOS, "<|endoftext|>", "<s>", "<bos>") if t in special), None)
        self.bos_id = special[bos] if bos else None
        self._json = tok.to_str()

    @classmethod
    def from_file(cls, path) -> HFTokenizer:
        path = Path(path)
        if not path.is_file():
            raise GptlabError(f"{path}: tokenizer file not found")
        try:
            return cls(tokenizers.Tokenizer.from_file(str(path)), str(path))
        except Exception as e:  # tokenizers raises plain Exception subclasses with long messages
            raise GptlabError(f"{path}: not a valid tokenizer.json ({str(e).splitlines()[0][:120]})") from None

    def special_tokens(self) -> dict[str, int]:
        return {t.content: i for i, t in self.tok.get_added_tokens_decoder().items() if t.special}

    def uses_split_pattern(self) -> bool:
        return "\\p{N}{1,2}" in self._json

    def byte_level_ranks(self) -> dict[bytes, int] | None:
        """bytes -> id for a byte-level BPE whose ids follow merge order; None for any other model."""
        spec = json.loads(self._json)
        model = spec.get("model", {})
        if model.get("type") != "BPE" or "ByteLevel" not in json.dumps(spec.get("decoder")):
            return None
        dec = byte_decoder()
        special = set(self.special_tokens())
        ranks = {}
        for tok, i in model["vocab"].items():
            if tok in special:
                continue
            try:
                ranks[bytes(dec[c] for c in tok)] = i
            except KeyError:
                return None
        return ranks

    def encode(self, text):
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts):
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids):
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_bytes(self):
        out = np.zeros(self.vocab_size, dtype=np.int32)
        ranks = self.byte_level_ranks()
        special = set(self.special_tokens().values())
        if ranks is not None:
            for b, i in ranks.items():
                out[i] = len(b)
            return out
        for i in range(self.vocab_size):
            piece = self.tok.id_to_token(i)
            if i in special or piece is None:
                continue
            if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                out[i] = 1                      # SentencePiece byte fallback: one raw byte
            else:                               # "▁" is SentencePiece's word-initial space
                out[i] = len(piece.replace("\u2581", " ").encode("utf-8"))
        return out

    def identity(self):
        return hashlib.sha256(self._json.encode()).hexdigest()[:16]


class CharTokenizer(Tokenizer):
    """One id per character (nanoGPT's shakespeare_char style meta.pkl)."""

    name = "char"

    def __init__(self, itos: dict[int, str]):
        self.itos = dict(itos)
        self.stoi = {c: i for i, c in self.itos.items()}
        self.vocab_size = max(self.itos) + 1
        self.bos_id = None

    def encode(self, text):
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise GptlabError(f"character {e.args[0]!r} is not in the char-level vocabulary") from None

    def decode(self, ids):
        return "".join(self.itos.get(int(i), "") for i in ids)

    def token_bytes(self):
        out = np.zeros(self.vocab_size, dtype=np.int32)
        for i, c in self.itos.items():
            out[i] = len(c.encode("utf-8"))
        return out

    def identity(self):
        return hashlib.sha256(json.dumps(sorted(self.itos.items())).encode()).hexdigest()[:16]


MADE_FROM = "made_from.json"       # beside a trained tokenizer.json: what it was trained from


def train_bpe(texts, vocab_size: int, out_dir: str | Path, made_from: dict | None = None,
              source: str = "the texts given") -> Path:
    """Train a byte-level BPE of `vocab_size` ids (the last is `<|bos|>`) and save out_dir/tokenizer.json, then
    `made_from` (the inputs that made it, see `made_from_config`) as out_dir/made_from.json. Nothing is written
    unless training succeeds on some text; the folder is checked for writing before the (long) training."""
    if vocab_size < 256 + 2:
        raise GptlabError(f"vocab_size {vocab_size} is too small: a byte-level BPE needs at least 258")
    out = Path(out_dir)
    path = out / "tokenizer.json"
    require_writable(out, "the tokenizer")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    seen = [0]

    def counted():
        for t in texts:
            seen[0] += len(t)
            yield t
    tok.train_from_iterator(counted(), trainer=trainer)
    if not seen[0]:
        raise GptlabError(f"{path}: not written: {source} hold no text to train the tokenizer on")
    tok.add_special_tokens([BOS])  # appended after the merges, so ids 0.. are bytes then merges in order
    tmp = path.with_suffix(".json.tmp")
    try:
        tok.save(str(tmp))
        _fsync(tmp)
        tmp.replace(path)
        if made_from is not None:
            record = dict(made_from, tokenizer_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
            side = out / MADE_FROM
            side_tmp = side.with_suffix(".json.tmp")
            side_tmp.write_text(json.dumps(record, indent=1))
            _fsync(side_tmp)
            side_tmp.replace(side)
    except Exception as e:  # tokenizers raises a plain Exception for I/O errors ("... (os error 28)")
        tmp.unlink(missing_ok=True)
        raise write_error(path, e) from None
    return path


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def made_from_config(cfg) -> dict:
    """What a tokenizer trained for `cfg` is made from: the training text (each domain's train files, by content
    hash, in the order they are read), how much of it (train_chars), the vocabulary size and the recipe."""
    return {"recipe": "gptlab-bpe-1", "split_pattern": hashlib.sha256(SPLIT_PATTERN.encode()).hexdigest()[:16],
            "vocab_size": cfg.model.vocab_size, "train_chars": cfg.tokenizer.train_chars,
            "sources": [[d.name, source_hash(d.train)] for d in cfg.data.domains if d.train]}


def made_from_differs(out_dir: str | Path, made_from: dict) -> str:
    """'' when out_dir holds a tokenizer.json made from exactly `made_from` (and not changed since), else what
    differs, in words ('vocab_size 512 -> 600', 'no record of what made it')."""
    out = Path(out_dir)
    try:
        record = json.loads((out / MADE_FROM).read_text())
        sha = hashlib.sha256((out / "tokenizer.json").read_bytes()).hexdigest()
    except (OSError, ValueError):
        return "no record of what made it"
    if not isinstance(record, dict) or record.get("tokenizer_sha256") != sha:
        return "tokenizer.json changed after it was made"
    changed = []
    for k, v in made_from.items():
        if record.get(k) == v:
            continue
        if k == "sources":
            old, new = dict(map(tuple, record.get(k) or [])), dict(map(tuple, v))
            names = sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
            changed.append(f"train text of {', '.join(map(repr, names))}" if names else "order of train sources")
        else:
            changed.append(f"{k} {record.get(k)} -> {v}")
    return ", ".join(changed)


def load_tokenizer(path: str | Path, check_text: str | None = None) -> Tokenizer:
    """A tokenizer.json (file or the folder holding it): tiktoken-backed when exact, else `tokenizers`."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    return TiktokenTokenizer.from_tokenizer_json(path, check_text)


def train_tokenizer_from_config(config_path, out_dir, vocab_size=None, max_chars=None) -> Path:
    """`gptlab tokenizer train`: a BPE of vocab_size ids (default: the config's model.vocab_size) on the
    config's training text, at most max_chars characters (default: the config's tokenizer.train_chars)."""
    if max_chars is not None and max_chars < 1:
        raise GptlabError(f"--max-chars {max_chars}: must be at least 1 (characters of text to train on)")
    cfg = load_config(config_path)
    if max_chars is None:
        max_chars = cfg.tokenizer.train_chars
        if max_chars < 1:
            raise GptlabError(f"{cfg.source}: tokenizer.train_chars must be at least 1, got {max_chars}")
    vocab = vocab_size or cfg.model.vocab_size
    made_from = dict(made_from_config(cfg), vocab_size=vocab, train_chars=max_chars)
    names = ", ".join(repr(d.name) for d in cfg.data.domains if d.train)
    return train_bpe(iter_training_text(cfg.data, max_chars), vocab, out_dir, made_from,
                     source=f"the train sources of {names} in {cfg.source}")


_PROBE_TEXT = (
    "def quicksort(arr):\n    if len(arr) <= 1:\n        return arr\n    pivot = arr[len(arr) // 2]\n"
    "SELECT c.name, SUM(o.amount) AS total FROM customers c JOIN orders o ON o.cid = c.id GROUP BY 1;\n"
    "Revenue increased 12.5% to $1,234.5 million in fiscal 2023, compared with $1,097.3 million.\n"
    "Photosynthesis converts light energy — the sun's — into chemical energy. Ünïcödé 中文 🙂 \t\r\n  x\n\n")
