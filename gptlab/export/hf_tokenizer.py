"""A checkpoint's tokenizer as Hugging Face tokenizer files, so that `AutoTokenizer.from_pretrained(DIR)` gives
the ids gptlab gives.

    gptlab export peers/llmc/gpt2_tiny.bin --format hf --out tiny_hf      # tokenizer.json + tokenizer_config.json
    python -m pytest tests/test_export_hf.py

Every tokenizer gptlab reads becomes a `tokenizers` pipeline:
  * a BPE whose ids are merge ranks (gptlab's, nanochat's, llm.c's, GPT-2's; `TiktokenTokenizer`): the split
    regex as a Split pre-tokenizer, bytes spelled in GPT-2's printable alphabet (ByteLevel), the vocabulary
    as the ranks, and as merges every way of cutting a token into two tokens, ordered by the rank of the
    token they make (what tiktoken applies: the adjacent pair whose concatenation has the lowest rank); a
    piece that is itself a token is taken whole, as tiktoken does (`ignore_merges`). Special tokens keep
    their ids and are marked special;
  * a Hugging Face tokenizer.json (`HFTokenizer`): as it is;
  * nanoGPT's char-level meta.pkl (`CharTokenizer`): a WordLevel vocabulary of the characters, a pre-tokenizer
    that cuts the text into single characters, and a decoder that joins them. A character outside the
    vocabulary is an error in transformers as in gptlab (there is no unknown token to map it to).
`write` checks the result against gptlab's own encoding on a mixed text (code, prose, numbers, non-ASCII) and
refuses to write a tokenizer that differs, and saves it through transformers' PreTrainedTokenizerFast (the
document separator as BOS and EOS, no added spaces when decoding).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers

from gptlab.errors import GptlabError
from gptlab.tokenizer import CharTokenizer, HFTokenizer, TiktokenTokenizer, Tokenizer, byte_decoder

CHECK_TEXT = (
    "def mean(xs):\n    return sum(xs) / len(xs)  # 3.14159\n\tSELECT id, name FROM t WHERE x >= 10;\n"
    "The 10-K reports revenue of $1,234.5 million (up 12%). It's what they'll say, isn't it?\n"
    "Ünïcödé: naïve café, 中文, emoji 🙂 — dashes –, quotes “x”.\r\n\n   trailing  spaces   \n")


@lru_cache(maxsize=1)
def byte_encoder() -> dict[int, str]:
    """byte -> the printable character GPT-2's byte-level vocabularies spell it with."""
    return {b: c for c, b in byte_decoder().items()}


def _spell(token: bytes) -> str:
    enc = byte_encoder()
    return "".join(enc[b] for b in token)


def byte_level_bpe(ranks: dict[bytes, int], pattern: str, special: dict[str, int]) -> tokenizers.Tokenizer:
    """The tokenizers pipeline that encodes as tiktoken does with these ranks, split pattern and specials."""
    vocab = {_spell(b): i for b, i in ranks.items()}
    merges = []
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], _spell(left), _spell(right)))
    merges.sort()
    vocab.update(special)
    bpe = models.BPE(vocab=vocab, merges=[(m[3], m[4]) for m in merges], ignore_merges=True, fuse_unk=False,
                     byte_fallback=False)
    tok = tokenizers.Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, _ in sorted(special.items(), key=lambda kv: kv[1])])
    return tok


def char_level(itos: dict[int, str]) -> tokenizers.Tokenizer:
    """One token per character: WordLevel over the characters, the text cut into single characters."""
    long = [c for c in itos.values() if len(c) != 1]
    if long:
        raise GptlabError(f"the char-level vocabulary has entries of {len(long[0])} characters ({long[0]!r:.20}); "
                          f"only single characters can be written as a tokenizer.json")
    tok = tokenizers.Tokenizer(models.WordLevel(vocab={c: i for i, c in itos.items()}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return tok


def to_tokenizers(tok: Tokenizer) -> tokenizers.Tokenizer:
    """`tok` as a tokenizers.Tokenizer (see the module docstring)."""
    if isinstance(tok, TiktokenTokenizer):
        return byte_level_bpe(*tok.bpe)
    if isinstance(tok, HFTokenizer):
        return tokenizers.Tokenizer.from_str(tok.tok.to_str())
    if isinstance(tok, CharTokenizer):
        return char_level(tok.itos)
    raise GptlabError(f"a {type(tok).__name__} cannot be written as Hugging Face tokenizer files")


def _usable(tok: Tokenizer, text: str) -> str:
    """`text` without the characters a char-level vocabulary lacks (others encode everything)."""
    if isinstance(tok, CharTokenizer):
        return "".join(c for c in text if c in tok.stoi)
    return text


def write(tok: Tokenizer, folder: Path, context: int, check: str = CHECK_TEXT) -> dict:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json in `folder`, after checking that
    they encode `check` (and CHECK_TEXT) to gptlab's ids and decode them back; returns the BOS/EOS token
    and id written ({} when the tokenizer has no document separator)."""
    try:
        from transformers import PreTrainedTokenizerFast  # deferred: optional extra [hf]; export needs it
    except ImportError:
        raise GptlabError("gptlab export --format hf needs transformers: pip install 'gptlab[hf]'") from None
    hf = to_tokenizers(tok)
    for text in dict.fromkeys((_usable(tok, CHECK_TEXT), _usable(tok, check))):
        ours = tok.encode(text)
        theirs = hf.encode(text, add_special_tokens=False).ids
        if theirs != ours:
            at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            raise GptlabError(f"the tokenizer cannot be written exactly as a tokenizer.json: it encodes a check "
                              f"text differently from token {at} on (gptlab {ours[at:at + 3]}, tokenizers "
                              f"{theirs[at:at + 3]})")
        if hf.decode(ours, skip_special_tokens=False) != tok.decode(ours):
            raise GptlabError("the tokenizer cannot be written exactly as a tokenizer.json: decoding differs")
    bos = None
    if tok.bos_id is not None:
        bos = hf.id_to_token(tok.bos_id)
    fast = PreTrainedTokenizerFast(tokenizer_object=hf, bos_token=bos, eos_token=bos, model_max_length=context,
                                   clean_up_tokenization_spaces=False)
    fast.save_pretrained(str(folder))
    return {"bos_token": bos, "bos_token_id": tok.bos_id} if bos else {}
