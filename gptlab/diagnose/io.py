"""Reading samples from JSONL (whatever produced them) and rendering diagnoses as a table.

    gptlab diagnose samples.jsonl            (table)       gptlab diagnose samples.jsonl --json

Input, one JSON object per line: {"id", "domain", "language"?, "prompt", "completion", "code_prefix"?,
"tests"?, "requires"?, "schema"?, "entry_point"?, "probe"?, "max_tokens"?, "temperature"?}. Extra keys are
ignored (a labelled file's "labels" too). A line that cannot be read is not fatal: it becomes an
`InputError` with its line number and the problem, reported in the output in that line's place, so one
bad line among thousands costs one row, not the run. Bytes that are not UTF-8 are replaced (U+FFFD) and
noted in the diagnosis (`evidence.input`); a null prompt or completion is read as empty, as the detectors
read it. A line longer than MAX_LINE_BYTES (8 MiB) becomes an InputError without being held in memory (it
is read past in 1 MiB chunks). The table shows what it cannot print (unpaired surrogates, control
characters in an id, domain or probe name) as U+FFFD; the JSON output escapes it. A file that cannot be
opened, or is not a regular file (a directory, a FIFO, /dev/zero), is a GptlabError; so is a file in
which no line is a valid sample (`require_samples`): a run that diagnosed nothing does not succeed.

    python -m pytest tests/test_diagnose_cli.py tests/test_fuzz_inputs.py
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from gptlab.diagnose.pipeline import diagnose_many
from gptlab.diagnose.rollup import rollup
from gptlab.diagnose.text import clip
from gptlab.diagnose.types import Diagnosis, Sample
from gptlab.errors import GptlabError
from gptlab.textfile import open_regular_file

_TEXT_FIELDS = ("prompt", "completion", "code_prefix", "tests", "schema", "entry_point", "language")
# A sample line is a few KB (the detectors read 64,000 characters of a completion); a line over this many
# bytes is a runaway or a file that is not JSONL, and is skipped unread.
MAX_LINE_BYTES = 8 * 2**20
_CHUNK = 2**20
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = {c: "\ufffd" for c in (*range(0x20), 0x7f) if chr(c) not in "\n\t"}
MAX_WARNINGS = 10      # unreadable lines named one by one; the rest are counted

@dataclass
class InputError:
    line: int
    id: str
    message: str

    def to_json(self) -> dict:
        return {"id": self.id, "failures": [], "metrics": {}, "evidence": {"input_error": self.message},
                "passed": None}


@dataclass
class InputLine:
    """One input line: the sample (or the error reading it) and the fields the roll-up groups by."""
    number: int
    sample: Sample | None
    error: InputError | None = None
    probe: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    notes: tuple[str, ...] = ()


def sample_from_dict(row: dict) -> Sample:
    """A Sample from one decoded JSON object; ValueError names the field that is wrong."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    for name in ("id", "domain", "prompt", "completion"):
        if name not in row:
            raise ValueError(f"missing field {name!r}")
    if row["prompt"] is None or row["completion"] is None:      # null: as the detectors read it, empty
        row = {**row, "prompt": row["prompt"] or "", "completion": row["completion"] or ""}
    tests = row.get("tests")
    if isinstance(tests, list) and all(isinstance(t, str) for t in tests):
        row = {**row, "tests": "\n".join(tests) + "\n"}     # one statement per item
    for name in _TEXT_FIELDS:
        if row.get(name) is not None and not isinstance(row[name], str):
            raise ValueError(f"field {name!r} must be a string, got {type(row[name]).__name__}")
    if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
        raise ValueError(f"field 'id' must be a string or an integer, got {type(row['id']).__name__}")
    if not isinstance(row["domain"], str) or not row["domain"].strip():
        raise ValueError("field 'domain' must be a non-empty string")
    requires = row.get("requires") or ()
    if isinstance(requires, str):
        requires = (requires,)
    if not isinstance(requires, (list, tuple)) or not all(isinstance(r, str) for r in requires):
        raise ValueError("field 'requires' must be a list of strings")
    return Sample(id=str(row["id"]), domain=row["domain"], prompt=row["prompt"], completion=row["completion"],
                  language=row.get("language"), code_prefix=row.get("code_prefix"), tests=row.get("tests"),
                  requires=tuple(requires), schema=row.get("schema"), entry_point=row.get("entry_point"))


def read_lines(path: str | Path):
    """Yields an InputLine per non-blank line of a JSONL file (a regular file; GptlabError otherwise)."""
    path = Path(path)
    with open_regular_file(path, "file of samples", "write the samples to a JSONL file") as f:
        for number, raw in _bounded_lines(f):
            if raw is None:
                limit = f"{MAX_LINE_BYTES >> 20} MiB" if MAX_LINE_BYTES % 2**20 == 0 else f"{MAX_LINE_BYTES:,} bytes"
                message = f"line {number}: longer than {limit}; skipped unread"
                yield InputLine(number, None, InputError(number, f"<line {number}>", message))
            elif raw.strip():
                yield _read_line(number, raw)


def _bounded_lines(f):
    """(number, bytes) per line, or (number, None) for a line over MAX_LINE_BYTES, read past in chunks."""
    number = 0
    while raw := f.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) <= MAX_LINE_BYTES or raw.endswith(b"\n"):
            yield number, raw
            continue
        while (rest := f.readline(_CHUNK)) and not rest.endswith(b"\n"):
            pass
        yield number, None


def _read_line(number: int, raw: bytes) -> InputLine:
    text = raw.decode("utf-8", errors="replace")
    notes = ("invalid UTF-8 replaced by U+FFFD",) if "\ufffd" in text and b"\xef\xbf\xbd" not in raw else ()
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        message = f"line {number}: not JSON ({clip(str(e), 120)})"
        return InputLine(number, None, InputError(number, f"<line {number}>", message))
    try:
        sample = sample_from_dict(obj)
    except ValueError as e:
        ident = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), (str, int)) else None
        return InputLine(number, None, InputError(number, str(ident) if ident is not None else f"<line {number}>",
                                                  f"line {number}: {e}"))
    return InputLine(number, sample, None,
               probe=obj["probe"] if isinstance(obj.get("probe"), str) else None,
               max_tokens=obj["max_tokens"] if _is_number(obj.get("max_tokens"), int) else None,
               temperature=obj["temperature"] if _is_number(obj.get("temperature"), (int, float)) else None,
               notes=notes)


def require_samples(path, rows: list[InputLine]) -> str | None:
    """GptlabError when no line of the file at `path` is a valid sample; else a note on the lines skipped, or
    None when every line is a sample."""
    if not rows:
        raise GptlabError(f"{path}: no samples (the file has no non-blank line)")
    bad = sum(1 for r in rows if r.sample is None)
    if bad == len(rows):
        raise GptlabError(f"{path}: no line is a valid sample ({bad} line{'s' * (bad != 1)} read, none usable); "
                          f"expected one JSON object per line with id, domain, prompt, completion")
    if bad:
        return f"{bad} of {len(rows)} lines skipped: not valid samples (input errors in the output)"
    return None


def _is_number(value, kind) -> bool:
    """A JSON number of `kind` that a table can print and the roll-up can group by (not true/false, NaN)."""
    return isinstance(value, kind) and not isinstance(value, bool) and not (isinstance(value, float) and
                                                                           math.isnan(value))


def diagnose_file(path: str | Path, *, execute: bool = True, unsafe_exec: bool = False, workers: int | None = None,
                  progress=None, warn=None) -> tuple[list[InputLine], list[Diagnosis | InputError]]:
    """Every line of a JSONL file diagnosed, in order; unreadable lines come back as InputError.

    `warn(message)` hears the first MAX_WARNINGS unreadable lines and how many were skipped; a file with no
    valid sample raises GptlabError (after the warnings) instead of returning a run that did nothing."""
    rows = list(read_lines(path))
    if warn is not None:
        for row in [r for r in rows if r.error is not None][:MAX_WARNINGS]:
            warn(row.error.message)
    note = require_samples(path, rows)
    if note and warn is not None:
        warn(note)
    found = iter(diagnose_many([r.sample for r in rows if r.sample is not None], execute=execute,
                               unsafe_exec=unsafe_exec, workers=workers, progress=progress))
    results = []
    for row in rows:
        if row.error is not None:
            results.append(row.error)
            continue
        d = next(found)
        if row.notes:
            d.evidence.setdefault("input", {})["line"] = list(row.notes)
        results.append(d)
    return rows, results


def rollup_input(rows: list[InputLine], results: list) -> list[dict]:
    """The roll-up's input (rollup.rollup): one dict per diagnosed sample."""
    return [{"probe": row.probe or _probe_name(row.sample), "domain": row.sample.domain.strip().lower(),
             "failures": res.failures, "passed": res.passed, "max_tokens": row.max_tokens,
             "temperature": row.temperature}
            for row, res in zip(rows, results) if row.sample is not None]


def _probe_name(sample: Sample) -> str:
    """Without a "probe" field, samples with the same prompt are one probe, named by its first line."""
    first = next((ln.strip() for ln in sample.prompt.splitlines() if ln.strip()), "")
    return clip(first, 40) or "(empty prompt)"


def render_table(rows: list[InputLine], results: list[Diagnosis | InputError]) -> str:
    """A fixed-width table, one line per sample: id, domain/language, failures, the first evidence."""
    header = f"{'id':24} {'domain':16} {'failures':38} evidence"
    lines = [header, "-" * 120]
    for row, res in zip(rows, results):
        if isinstance(res, InputError):
            lines.append(f"{clip(res.id, 24):24} {'-':16} {'(input error)':38} {res.message}")
            continue
        sample = row.sample
        where = sample.domain + (f"/{sample.language}" if sample.language else "")
        failures = ", ".join(res.failures) if res.failures else "ok"
        first = next(iter(res.failures), None)
        note = _evidence_line(first, res.evidence.get(first, {})) if first else ""
        lines.append(f"{clip(res.id, 24):24} {clip(where, 16):16} {clip(failures, 38):38} {clip(note, 100)}")
    return "\n".join(lines)


def _evidence_line(mode: str, ev: dict) -> str:
    """The one fact a reader wants first for each mode."""
    if mode == "prompt_echo":
        return f"{ev.get('words')} words copied: \"{clip(ev.get('span', ''), 50)}\""
    if mode == "repetition_loop":
        if "unit" in ev:
            return f"x{ev.get('copies')}: \"{clip(ev['unit'], 50)}\""
        if "lines" in ev:
            return f"{ev.get('copies')} similar lines: \"{clip(ev['lines'][0], 40)}\""
        return f"x{ev.get('count')}: \"{clip(ev.get('phrase', ''), 50)}\""
    if mode == "word_fixation":
        return f"'{ev.get('word')}' x{ev.get('count')} ({ev.get('share', 0):.0%} of content words)"
    if mode == "number_fixation":
        return f"{ev.get('numbers')} numbers: {clip(ev.get('run', ''), 50)}"
    if mode == "topic_drift":
        start = ev.get("start_similarity")
        fall = f"{start:.2f} -> " if start is not None else ""
        return f"similarity {fall}{ev.get('similarity'):.2f}: \"{clip(ev.get('late_span', ''), 40)}\""
    if mode in ("syntax_error",):
        return f"line {ev.get('line')}: {ev.get('message')}"
    if mode == "test_failure":
        return f"{ev.get('status')}: {clip(ev.get('error') or ev.get('message') or '', 60)}"
    if mode == "missing_requirement":
        return "; ".join(filter(None, ["missing " + ", ".join(ev.get("missing", [])) if ev.get("missing") else "",
                                       ev.get("statement", ""), ev.get("sqlite_error", "")]))
    if mode == "hallucinated_section":
        item = (ev.get("items") or [{}])[0]
        return f"{clip(item.get('heading') or item.get('reference', ''), 40)}: {item.get('why', '')}"
    if mode == "malformed_figure":
        return ", ".join(f"{f['figure']} ({f['rule']})" for f in ev.get("figures", [])[:3])
    if mode == "no_code":
        return ev.get("reason", "")
    return clip(json.dumps(ev), 60)


def render_json_lines(results: list) -> str:
    return "\n".join(json.dumps(r.to_json()) for r in results)


def render_rollup(summary) -> str:
    """Per-domain verdicts and per-probe rates, as text (summary: rollup.Rollup)."""
    lines = ["", "per domain:"]
    for domain, d in summary.domains.items():
        v = d["verdict"]
        lines.append(f"  {domain:14} {v.verdict:7} {v.why}")
    lines += ["", "per probe:"]
    for p in summary.probes:
        setting = "".join(f" {k}={p[k]}" for k in ("max_tokens", "temperature") if p.get(k) is not None)
        rates = ", ".join(f"{m} {r:.0%}" for m, r in sorted(p["rates"].items(), key=lambda kv: -kv[1])) or "clean"
        passk = "".join(f" {k} {p[k]:.2f}" for k in ("pass@1", "pass@5", "pass@10") if k in p)
        lines.append(f"  {clip(p['probe'], 30):30} n={p['n']:<4}{setting}{passk}  {rates}")
    return "\n".join(lines)


def render_report(rows: list[InputLine], results: list) -> str:
    """The table and the roll-up, printable: an id or probe name from the file cannot break the encoding
    (unpaired surrogates) or the terminal (control characters); both become U+FFFD."""
    text = render_table(rows, results)
    good = rollup_input(rows, results)
    if good:
        text += "\n" + render_rollup(rollup(good))
    return _SURROGATE.sub("\ufffd", text).translate(_CONTROL)
