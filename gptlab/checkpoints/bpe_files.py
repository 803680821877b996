"""Read the byte-level BPE files that travel with GPT-2-style checkpoints into a gptlab Tokenizer.

    gptlab models peers/llmc          # uses read_llmc_tokenizer on tokenizer_*.bin
    python -m pytest tests/test_checkpoints_llmc.py tests/test_checkpoints_nanogpt.py

Every format here is a BPE whose token ids are its merge ranks, so all of them become a TiktokenTokenizer with
GPT-2's split pattern and `<|endoftext|>` as the document separator:
  * llm.c's tokenizer .bin (`gpt2_tokenizer.bin`): header of 256 int32 [20240328, version, vocab, eot], then per
    id a uint8 length and that many bytes; ids 0..255 must be the 256 single bytes (in any order);
  * OpenAI's `vocab.json` + `merges.txt` (bytes spelled with GPT-2's printable stand-ins);
  * a `.tiktoken` file (one `base64(token) rank` per line).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from gptlab.errors import GptlabError
from gptlab.tokenizer import GPT2_PATTERN, TiktokenTokenizer, byte_decoder

EOT = "<|endoftext|>"
LLMC_TOKENIZER_MAGIC = 20240328


def _gpt2_bpe(ranks: dict[bytes, int], path: Path, eot_id: int | None = None) -> TiktokenTokenizer:
    singles = {b for b in ranks if len(b) == 1}
    if len(singles) != 256:
        raise GptlabError(f"{path}: a byte-level BPE needs all 256 single bytes, found {len(singles)}")
    eot_id = max(ranks.values()) + 1 if eot_id is None else eot_id
    return TiktokenTokenizer(ranks, GPT2_PATTERN, {EOT: eot_id}, EOT, name=path.stem)


def read_llmc_tokenizer(path: str | Path) -> TiktokenTokenizer:
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 1024:
        raise GptlabError(f"{path}: {len(data)} bytes is too short for an llm.c tokenizer (header is 1024)")
    header = np.frombuffer(data[:1024], dtype="<i4")
    if header[0] != LLMC_TOKENIZER_MAGIC:
        raise GptlabError(f"{path}: not an llm.c tokenizer file (magic {header[0]}, expected {LLMC_TOKENIZER_MAGIC})")
    if header[1] not in (1, 2):
        raise GptlabError(f"{path}: llm.c tokenizer version {header[1]} is unknown (this reader knows 1 and 2)")
    n, eot = int(header[2]), (int(header[3]) if header[1] == 2 else None)
    ranks, pos = {}, 1024
    for i in range(n):
        if pos >= len(data):
            raise GptlabError(f"{path}: truncated: the header promises {n} tokens, the file ends at token {i}")
        length = data[pos]
        token = data[pos + 1:pos + 1 + length]
        pos += 1 + length
        if len(token) != length:
            raise GptlabError(f"{path}: truncated inside token {i}")
        if i == eot or (eot is None and token == EOT.encode()):
            eot = i
            continue
        if i < 256 and length != 1:
            raise GptlabError(f"{path}: token {i} is {length} bytes; ids 0..255 must be the single bytes")
        if token in ranks:
            raise GptlabError(f"{path}: token {i} repeats token {ranks[token]} ({token!r}): not a BPE vocabulary")
        ranks[token] = i
    return _gpt2_bpe(ranks, path, eot)


def read_vocab_merges(vocab_path: str | Path, merges_path: str | Path) -> TiktokenTokenizer:
    """OpenAI's encoder.json/vocab.json + merges.txt; the ids must follow merge order (they do for GPT-2)."""
    vocab_path, merges_path = Path(vocab_path), Path(merges_path)
    try:
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
        merges = [ln.split() for ln in merges_path.read_text(encoding="utf-8").splitlines()
                  if ln and not ln.startswith("#version")]
    except (OSError, ValueError) as e:
        raise GptlabError(f"{vocab_path.parent}: cannot read vocab.json/merges.txt ({e})") from None
    dec = byte_decoder()
    ranks, eot_id = {}, None
    for tok, i in vocab.items():
        if tok == EOT:
            eot_id = i
            continue
        try:
            ranks[bytes(dec[c] for c in tok)] = i
        except KeyError:
            raise GptlabError(f"{vocab_path}: token {tok!r} is not spelled in GPT-2's byte alphabet") from None
    last = -1
    for pair in merges:
        merged = vocab.get("".join(pair), -1) if len(pair) == 2 else -1
        if merged <= last:
            raise GptlabError(f"{merges_path}: merge {' '.join(pair)!r} does not follow id order; "
                              f"convert it to a tokenizer.json instead")
        last = merged
    return _gpt2_bpe(ranks, vocab_path, eot_id)


def read_tiktoken_file(path: str | Path) -> TiktokenTokenizer:
    path = Path(path)
    ranks = {}
    try:
        for n, line in enumerate(path.read_text(encoding="ascii").splitlines(), 1):
            if line.strip():
                tok, rank = line.split()
                ranks[base64.b64decode(tok, validate=True)] = int(rank)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise GptlabError(f"{path}: not a .tiktoken rank file (line {n}: {type(e).__name__})") from None
    return _gpt2_bpe(ranks, path)
