"""Token-id files as bpb text: nanoGPT's `val.bin` and llm.c's data `.bin`, decoded with the model's tokenizer.

    gptlab eval out-shakespeare-char --bpb code=data/shakespeare_char/val.bin
    python -m pytest tests/test_bpb_tokens.py

Two layouts are read, told apart by llm.c's header:
  * nanoGPT (`prepare.py`): a flat array of uint16 token ids, nothing else (np.memmap dtype=uint16);
  * llm.c (`dev/data/data_common.write_datafile`): 256 int32 `[20240520, 1, ntok, 0...]`, then ntok uint16 ids.
The ids are in the tokenizer of the checkpoint trained on them, so they are decoded with the loaded checkpoint's
tokenizer into documents: split on its document separator (`tokenizer.bos_id`, e.g. <|endoftext|>) when it has
one, else the whole file is one document (char-level meta.pkl). The text is then scored with the normal protocol
(evaluate/bpb.py), so the number is comparable with any other model's bpb on the same text. Only the first
MAX_TOKEN_IDS ids of a file are read (the rest is not scored). An empty file, an odd size, a header that
disagrees with the size, or an id the tokenizer does not have is a one-line error naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gptlab.errors import GptlabError

SUFFIXES = (".bin",)
MAX_TOKEN_IDS = 4_000_000          # ids read per file: 8 MB of uint16, a few seconds to decode
LLMC_MAGIC, LLMC_VERSION, LLMC_HEADER_BYTES = 20240520, 1, 256 * 4


def is_token_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SUFFIXES


def read_ids(path: str | Path) -> np.ndarray:
    """The token ids of a nanoGPT or llm.c data file (memory-mapped uint16, at most MAX_TOKEN_IDS of them)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = np.frombuffer(f.read(12), dtype="<i4") if size >= LLMC_HEADER_BYTES else None
    except OSError as e:
        raise GptlabError(f"{path}: cannot read ({e.strerror})") from None
    offset = 0
    if head is not None and len(head) == 3 and int(head[0]) == LLMC_MAGIC:
        if int(head[1]) != LLMC_VERSION or LLMC_HEADER_BYTES + 2 * int(head[2]) != size:
            raise GptlabError(f"{path}: an llm.c data header (version {int(head[1])}, {int(head[2])} tokens) "
                              f"that does not match the file ({size} bytes); expected version {LLMC_VERSION} "
                              f"and {LLMC_HEADER_BYTES} + 2 x tokens bytes")
        offset = LLMC_HEADER_BYTES
    if size % 2:
        raise GptlabError(f"{path}: {size} bytes, an odd size: not a file of uint16 token ids "
                          f"(nanoGPT's val.bin)")
    if size - offset == 0:
        raise GptlabError(f"{path}: no token ids in the file")
    count = min((size - offset) // 2, MAX_TOKEN_IDS)
    return np.memmap(path, dtype="<u2", mode="r", offset=offset, shape=(count,))


def decode_documents(path: str | Path, tokenizer) -> list[str]:
    """The documents a token-id file stands for, in `tokenizer` (the checkpoint's; see the module docstring)."""
    ids = np.asarray(read_ids(path), dtype=np.int64)
    bad = np.flatnonzero(ids >= tokenizer.vocab_size)
    if len(bad):
        i = int(bad[0])
        raise GptlabError(f"{path}: token id {int(ids[i])} at position {i} is not in the checkpoint's tokenizer "
                          f"({tokenizer.vocab_size} ids): the file was made with another tokenizer")
    if tokenizer.bos_id is None:
        pieces = [ids]
    else:
        pieces = np.split(ids, np.flatnonzero(ids == tokenizer.bos_id))
    docs = [text for text in (tokenizer.decode(p[p != tokenizer.bos_id].tolist()) for p in pieces) if text]
    if not docs:
        raise GptlabError(f"{path}: the token ids decode to no text")
    return docs
