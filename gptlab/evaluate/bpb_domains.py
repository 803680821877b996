"""Which text each bpb domain is scored on, and per-domain bpb of one model through the results store.

    gptlab eval runs/demo                                 the run's own validation domains
    gptlab eval ckpt.pt --bpb code=val.jsonl --json       domains of your own (.txt: one document,
                                                          .jsonl: one document per line in "text",
                                                          .bin: nanoGPT/llm.c token ids, bpb_tokens.py)
    python -m pytest tests/test_eval.py -k "domains or json_lines or without_text"

Domains, in order of precedence:
1. `--bpb NAME=FILE` (repeatable; several files under one NAME are one domain): only these are scored;
2. a gptlab run: the `[[data.domains]]` of its run.json, each on its `val` files;
3. any other checkpoint: the sample corpus shipped with gptlab, one domain per gptlab/corpus/NAME.val.jsonl
   (code_python, code_go, code_javascript, code_java, code_sql, web_en, finance_sec).
A result is stored under (weights hash, domain, content hash of the files, protocol version): the same
model on the same bytes is never scored twice, and an edited file is scored again. A `--bpb` file is read
through once before any model is loaded: an empty, binary (not UTF-8) or malformed one is a one-line error
(exit 2), never a skipped domain (a `.bin` of token ids is checked for its size then, and for ids the
checkpoint's tokenizer lacks once it is loaded, also exit 2); a run's or the shipped corpus's missing file is skipped with a warning.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from gptlab.data import iter_documents, source_hash
from gptlab.errors import GptlabError
from gptlab.evaluate.bpb import PROTOCOL_VERSION, read_documents, score_documents
from gptlab.evaluate.bpb_tokens import decode_documents, is_token_file, read_ids

CORPUS_DIR = Path(__file__).resolve().parent.parent / "corpus"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass
class Domain:
    name: str
    files: list[str]


def parse_bpb_args(items) -> list[Domain]:
    """`["code=a.jsonl", "code=b.txt", "web=c.txt"]` (or a {name: file(s)} mapping) as domains."""
    if isinstance(items, dict):
        items = [f"{k}={f}" for k, v in items.items() for f in ([v] if isinstance(v, (str, Path)) else v)]
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, file = str(item).partition("=")
        if not sep or not name or not file:
            raise GptlabError(f"--bpb {item!r}: expected NAME=FILE, e.g. --bpb code=val.jsonl")
        if not _NAME.match(name):
            raise GptlabError(f"--bpb {item!r}: domain name may use letters, digits, '_', '-' and '.' only")
        path = Path(file).expanduser()
        if not path.is_file():
            raise GptlabError(f"--bpb {item!r}: {path}: no such file")
        if is_token_file(path):
            try:                            # size and header now; ids against the tokenizer once it is loaded
                read_ids(path)
            except GptlabError as e:
                raise GptlabError(f"--bpb {item!r}: {e}") from None
        elif path.suffix.lower() not in (".txt", ".jsonl", ".parquet", ".md", ".text"):
            raise GptlabError(f"--bpb {item!r}: {path}: use a .txt (one document), .jsonl (one per line) or "
                              f".bin (nanoGPT/llm.c token ids) file")
        else:
            _check_text(item, path)
        out.setdefault(name, []).append(str(path.resolve()))
    return [Domain(n, f) for n, f in out.items()]


def _check_text(item: str, path: Path) -> None:
    """A file you named must hold text: it is read through once (.jsonl line by line) before any model is
    loaded, so that an empty or binary file — or a bad line anywhere — is a one-line error, not a domain
    skipped with exit status 0 after the model was loaded."""
    try:
        docs = sum(1 for _ in iter_documents(path))
    except GptlabError as e:             # not UTF-8 / not JSON, naming the line
        raise GptlabError(f"--bpb {item!r}: {e}") from None
    except OSError as e:
        raise GptlabError(f"--bpb {item!r}: {path}: cannot read ({e.strerror})") from None
    if not docs:
        raise GptlabError(f"--bpb {item!r}: {path}: no text in the file (empty, or only blank lines / "
                          f"empty \"text\" fields)")


def corpus_domains() -> list[Domain]:
    return [Domain(p.name.removesuffix(".val.jsonl"), [str(p)]) for p in sorted(CORPUS_DIR.glob("*.val.jsonl"))]


def run_domains(run_config: dict) -> list[Domain]:
    """The validation domains a gptlab run was trained with (run.json's data.domains)."""
    out = []
    for d in (run_config.get("data") or {}).get("domains") or []:
        if d.get("val"):
            out.append(Domain(d["name"], list(d["val"])))
    return out


def read_run_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GptlabError(f"{path}: unreadable run config ({e})") from None


def domains_for(ref, run_config: dict, explicit: list[Domain] | None) -> list[Domain]:
    if explicit:
        return explicit
    if ref.format == "gptlab_run" and run_domains(run_config):
        return run_domains(run_config)
    return corpus_domains()


def token_documents(d: Domain, tokenizer) -> dict[str, list[str]]:
    """{file: documents} of the domain's token-id files, decoded with the checkpoint's tokenizer; a file it
    cannot decode is an error (exit 2), not a skipped domain."""
    return {f: decode_documents(f, tokenizer) for f in d.files if is_token_file(f)}


def text_documents(d: Domain, token_docs: dict[str, list[str]]) -> list[str]:
    """Every document of the domain, its files in order (token files from `token_documents`)."""
    docs = [doc for f in d.files for doc in (token_docs.get(f) or read_documents(f))]
    if not docs:
        raise GptlabError(f"{', '.join(d.files)}: no documents")
    return docs


def score_domains(store, loaded, domains: list[Domain], *, device, on_result=None, warn=print) -> tuple[int, int]:
    """bpb of one model on each domain, from the store when there, else computed and stored.
    `on_result(domain, row, cached)` after each; returns (computed, cached)."""
    protocol = PROTOCOL_VERSION
    info = loaded.info
    computed = cached = 0
    for d in domains:
        missing = [f for f in d.files if not Path(f).is_file()]
        if missing:
            warn(f"bpb domain {d.name}: {missing[0]} not found; skipped (pass --bpb {d.name}=FILE)")
            if on_result:
                on_result(d.name, None, False)
            continue
        data_hash = source_hash(d.files)
        row = store.get_bpb(info.weights_hash, d.name, data_hash, protocol)
        was_cached = row is not None
        if was_cached:
            cached += 1
        else:
            token_docs = token_documents(d, loaded.tokenizer)
            try:                        # ^ a bad .bin you named is an error (exit 2), not a skipped domain
                result = score_documents(loaded.model, loaded.tokenizer, text_documents(d, token_docs),
                                         device=device)
            except GptlabError as e:
                warn(f"bpb domain {d.name} of {info.run}@{info.step}: {e}; skipped")
                if on_result:
                    on_result(d.name, None, False)
                continue
            store.put_bpb(info.weights_hash, d.name, data_hash, protocol, result)
            row = store.get_bpb(info.weights_hash, d.name, data_hash, protocol)
            computed += 1
        if on_result:
            on_result(d.name, row, was_cached)
    return computed, cached
