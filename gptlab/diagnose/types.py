"""The data the detectors read and write: a `Sample` in, a `Finding` per mode, a `Diagnosis` out.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_detectors.py -k "normalise or clean_text"

`normalise` makes any sample safe for every detector (text that UTF-8 can encode, bounded length), so the
detectors themselves never have to defend against bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The detectors look at this many characters of a completion (and of a prompt); a 124M model's sample of
# a few hundred tokens is ~1-3 KB, so this only bites on runaway or pasted input, and says so in metrics.
MAX_CHARS = 64_000

# Prose for which no language is given is diagnosed as text; these are the code languages we parse.
LANGUAGES = ("python", "go", "javascript", "jsx", "sql", "java")
LANGUAGE_ALIASES = {"py": "python", "python3": "python", "golang": "go", "js": "javascript",
                    "node": "javascript", "react": "jsx", "sqlite": "sql", "postgresql": "sql"}


@dataclass
class Sample:
    id: str
    domain: str
    prompt: str
    completion: str
    language: str | None = None
    code_prefix: str | None = None
    tests: str | None = None
    requires: tuple[str, ...] = ()
    schema: str | None = None
    entry_point: str | None = None


@dataclass
class Finding:
    """What one detector concluded: `failed`, the numbers it computed, and why (only when it failed)."""
    failed: bool
    metrics: dict = field(default_factory=dict)
    evidence: dict | None = None


@dataclass
class Diagnosis:
    id: str
    failures: list[str]
    metrics: dict
    evidence: dict
    passed: bool | None = None   # tests passed / failed / not executed (None); what pass@k counts

    def to_json(self) -> dict:
        return {"id": self.id, "failures": list(self.failures), "metrics": self.metrics,
                "evidence": self.evidence, "passed": self.passed}


def clean_text(value, limit: int = MAX_CHARS) -> tuple[str, list[str]]:
    """`value` as text every detector can handle, plus notes on what had to change."""
    notes = []
    if value is None:
        return "", notes
    if isinstance(value, bytes):
        text = value.decode("utf-8", errors="replace")
        if "\ufffd" in text and b"\xef\xbf\xbd" not in value:
            notes.append("invalid UTF-8 replaced by U+FFFD")
    else:
        text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # lone surrogates ("\ud800" in JSON) would break every encoder downstream
        text = text.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace")
        notes.append("unpaired surrogates replaced by U+FFFD")
    if "\x00" in text:
        text = text.replace("\x00", "")
        notes.append("NUL characters removed")
    if len(text) > limit:
        notes.append(f"{len(text):,} characters; the first {limit:,} analysed")
        text = text[:limit]
    return text, notes


def normalise_language(language) -> str | None:
    if language is None or (isinstance(language, str) and not language.strip()):
        return None
    name = str(language).strip().lower()
    return LANGUAGE_ALIASES.get(name, name)


def normalise(sample: Sample) -> tuple[Sample, dict]:
    """A copy of `sample` with clean text fields, and {field: [notes]} for anything that was changed."""
    notes = {}
    fields = {}
    for name in ("prompt", "completion", "code_prefix", "tests", "schema"):
        value = getattr(sample, name)
        if value is None and name not in ("prompt", "completion"):
            fields[name] = None
            continue
        fields[name], changed = clean_text(value)
        if changed:
            notes[name] = changed
    requires = sample.requires
    if isinstance(requires, str):
        requires = (requires,)
    requires = tuple(str(r).strip() for r in (requires or ()) if str(r).strip())
    entry = sample.entry_point.strip() if isinstance(sample.entry_point, str) and sample.entry_point.strip() \
        else None
    clean = Sample(id=str(sample.id), domain=str(sample.domain or "general").strip().lower() or "general",
                   language=normalise_language(sample.language), requires=requires, entry_point=entry,
                   **fields)
    return clean, notes
