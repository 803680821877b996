"""Probe suites: the prompts users sample after every checkpoint, kept as versioned TOML data.

    gptlab probes                     lists the default suite (gptlab/probes/suites/default.toml)
    gptlab probes my_suite.toml       validates and lists a suite of your own
    python -m pytest tests/test_probes.py

A suite file has a `name`, a `version` and a list of `[[probes]]` tables. A probe's keys:

    name         unique, [a-z0-9_]; the report's label
    domain       code, general, finance, or a domain of your own (matched against a run's data `group`)
    prompt       the text the model continues (the engine prepends the tokenizer's BOS, if it has one)
    description  optional one line: what a reader should look for
    language     optional: python, go, javascript, jsx, sql, java
    code_prefix  optional: the end of the prompt that the completion continues as code, so the program the
                 detectors parse/run is code_prefix + completion (must be a suffix of the prompt)
    tests        optional Python asserts, run against code_prefix + completion (language python only)
    entry_point  optional: the function the tests call (default: the `def NAME(` in code_prefix)
    requires     optional list of constructs the program must contain, from the detectors' vocabulary for
                 its language (SQL: group_by, aggregate, order_by, limit, join ...; Go: os_getenv,
                 signal_handling ...; JSX: useState, useEffect, fetch ...; Python: recursion, loop ...;
                 see `known` in gptlab/diagnose/missing_requirement.py)
    schema       optional SQL DDL the query runs against (language sql only)
    twin_of      optional: the short probe this one is the long-prompt twin of (same task, more context),
                 so the effect of prompt length can be measured

Unknown keys and bad values are errors naming the probe and the field, in one line whatever the file holds
(text from it is quoted with control characters escaped; a file over MAX_FILE_BYTES, or one that is not a
regular file, is refused unread; tests/test_fuzz_inputs.py fuzzes this). A probe's identity (`probe_hash`)
is a hash of everything that changes what is sampled or how it is judged (not `description`, not
`twin_of`, not the suite's name or version): editing one probe resamples that probe only, and a probe
shared by two suites is sampled once.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gptlab.diagnose import missing_requirement
from gptlab.errors import GptlabError
from gptlab.textfile import parse_toml, read_text_file, shown

SUITES_DIR = Path(__file__).parent / "suites"
LANGUAGES = ("python", "go", "javascript", "jsx", "sql", "java")
_NAME = re.compile(r"^[a-z0-9_]+$")
_SUITE_KEYS = {"name", "version", "description", "probes"}
MAX_FILE_BYTES = 4 * 2**20       # the default suite is ~15 KB; more is not a suite
# Keys that define a probe's identity; description and twin_of are presentation only.
_HASHED = ("name", "domain", "prompt", "language", "code_prefix", "tests", "entry_point", "requires", "schema")


@dataclass(frozen=True)
class Probe:
    name: str
    domain: str
    prompt: str
    description: str = ""
    language: str | None = None
    code_prefix: str | None = None
    tests: str | None = None
    entry_point: str | None = None
    requires: tuple[str, ...] = ()
    schema: str | None = None
    twin_of: str | None = None

    @property
    def probe_hash(self) -> str:
        spec = {k: getattr(self, k) for k in _HASHED}
        spec["requires"] = list(self.requires)
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def spec(self) -> dict:
        """All fields as plain JSON (the store's probes.spec_json: what the detectors read)."""
        d = asdict(self)
        d["requires"] = list(self.requires)
        return d


@dataclass
class Suite:
    name: str
    version: str
    path: str
    description: str = ""
    probes: list[Probe] = field(default_factory=list)

    def get(self, name: str) -> Probe:
        for p in self.probes:
            if p.name == name:
                return p
        raise KeyError(name)


def _field(probe: str, key: str, value, kind, where: str):
    if not isinstance(value, kind) or isinstance(value, bool):
        want = {str: "a string", list: "a list of strings"}[kind]
        raise GptlabError(f"{where}: probe '{probe}' field '{key}' must be {want}, got {value!r}"[:300])
    return value


def _probe(raw, index: int, where: str) -> Probe:
    if not isinstance(raw, dict):
        raise GptlabError(f"{where}: probes entry #{index + 1} is not a table")
    name = raw.get("name")
    label = shown(name) if isinstance(name, str) and name else f"#{index + 1}"
    keys = {f for f in Probe.__dataclass_fields__}
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise GptlabError(f"{where}: probe '{label}' has unknown field '{shown(unknown[0])}' "
                          f"(known: {', '.join(sorted(keys))})")
    for key in ("name", "domain", "prompt"):
        if key not in raw:
            raise GptlabError(f"{where}: probe '{label}' is missing field '{key}'")
    vals = {}
    for key, value in raw.items():
        vals[key] = _field(label, key, value, list if key == "requires" else str, where)
    if not _NAME.fullmatch(name):
        raise GptlabError(f"{where}: probe '{label}' field 'name' must use only a-z, 0-9 and _")
    if not vals["domain"].strip():
        raise GptlabError(f"{where}: probe '{name}' field 'domain' is empty")
    if not vals["prompt"].strip():
        raise GptlabError(f"{where}: probe '{name}' field 'prompt' is empty")
    lang = vals.get("language")
    if lang is not None and lang not in LANGUAGES:
        raise GptlabError(f"{where}: probe '{name}' field 'language' must be one of {', '.join(LANGUAGES)}, "
                          f"got {lang!r}")
    requires = vals.get("requires", [])
    if any(not isinstance(r, str) or not r.strip() for r in requires):
        raise GptlabError(f"{where}: probe '{name}' field 'requires' must be a list of non-empty strings")
    if requires:
        _check_requires(name, requires, lang, where)
    prefix = vals.get("code_prefix")
    if prefix is not None:
        if lang is None:
            raise GptlabError(f"{where}: probe '{name}' field 'code_prefix' needs a 'language'")
        if not prefix or not vals["prompt"].endswith(prefix):
            raise GptlabError(f"{where}: probe '{name}' field 'code_prefix' must be a non-empty suffix of "
                              f"the prompt (the completion continues it)")
    if vals.get("schema") is not None and lang != "sql":
        raise GptlabError(f"{where}: probe '{name}' field 'schema' is for language sql only")
    entry = vals.get("entry_point")
    tests = vals.get("tests")
    if entry is not None and not entry.isidentifier():
        raise GptlabError(f"{where}: probe '{name}' field 'entry_point' is not a Python identifier: {entry!r}")
    if tests is not None:
        entry = _check_tests(name, tests, lang, prefix, entry, where)
    return Probe(name=name, domain=vals["domain"], prompt=vals["prompt"], description=vals.get("description", ""),
                 language=lang, code_prefix=prefix, tests=tests, entry_point=entry, requires=tuple(requires),
                 schema=vals.get("schema"), twin_of=vals.get("twin_of"))


def _check_requires(name, requires, lang, where) -> None:
    """Every name must be one the detectors check for this language: a typo would never be flagged."""
    if lang is None:
        raise GptlabError(f"{where}: probe '{name}' field 'requires' needs a 'language'")
    known = missing_requirement.known(lang)
    unknown = [r for r in requires if r not in known]
    if unknown:
        raise GptlabError(f"{where}: probe '{name}' field 'requires': unknown construct '{shown(unknown[0])}' "
                          f"for {lang} (known: {', '.join(known)})")


def _check_tests(name, tests, lang, prefix, entry, where) -> str:
    """Tests must be Python with at least one assert calling the entry point; returns the entry point."""
    if lang != "python":
        raise GptlabError(f"{where}: probe '{name}' field 'tests' needs language = \"python\" (got {lang!r})")
    try:
        tree = ast.parse(tests)
    except SyntaxError as e:
        raise GptlabError(f"{where}: probe '{name}' field 'tests' is not valid Python (line {e.lineno}: "
                          f"{shown(str(e.msg), 120)})") from None
    except (MemoryError, RecursionError):        # the parser's own limits: deep nesting, long operator chains
        raise GptlabError(f"{where}: probe '{name}' field 'tests' is nested too deeply for the Python "
                          f"parser") from None
    if not any(isinstance(n, ast.Assert) for n in ast.walk(tree)):
        raise GptlabError(f"{where}: probe '{name}' field 'tests' has no assert statement")
    if entry is None:
        found = re.search(r"def\s+([A-Za-z_]\w*)\s*\(", prefix or "")
        if not found:
            raise GptlabError(f"{where}: probe '{name}' field 'entry_point' is needed: no `def NAME(` in "
                              f"code_prefix")
        entry = found.group(1)
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    if entry not in called:
        raise GptlabError(f"{where}: probe '{name}' field 'tests' never calls the entry point '{entry}'")
    return entry


def parse_suite(text: str, where: str) -> Suite:
    raw = parse_toml(text, where)
    unknown = sorted(set(raw) - _SUITE_KEYS)
    if unknown:
        raise GptlabError(f"{where}: unknown top-level key '{shown(unknown[0])}' "
                          f"(known: {', '.join(sorted(_SUITE_KEYS))})")
    for key in ("name", "version"):
        if key not in raw:
            raise GptlabError(f"{where}: missing top-level key '{key}'")
    version = raw["version"]
    if isinstance(version, bool) or not isinstance(version, (str, int)) or not str(version).strip():
        raise GptlabError(f"{where}: 'version' must be a non-empty string or integer")
    if not isinstance(raw["name"], str) or not raw["name"].strip():
        raise GptlabError(f"{where}: 'name' must be a non-empty string")
    if not isinstance(raw.get("description", ""), str):
        raise GptlabError(f"{where}: 'description' must be a string")
    items = raw.get("probes")
    if not isinstance(items, list) or not items:
        raise GptlabError(f"{where}: no [[probes]]: a suite needs at least one probe")
    probes = [_probe(p, i, where) for i, p in enumerate(items)]
    names = [p.name for p in probes]
    for p in probes:
        if names.count(p.name) > 1:
            raise GptlabError(f"{where}: probe '{p.name}' is defined twice (field 'name')")
        if p.twin_of is not None and (p.twin_of not in names or p.twin_of == p.name):
            raise GptlabError(f"{where}: probe '{p.name}' field 'twin_of' names no other probe of the suite: "
                              f"{p.twin_of!r}")
    return Suite(name=raw["name"], version=str(version), path=where, description=raw.get("description", ""),
                 probes=probes)


def load_suite(name_or_path: str | Path = "default") -> Suite:
    """A shipped suite by name (gptlab/probes/suites/NAME.toml) or a TOML file of one's own."""
    p = Path(name_or_path)
    if not p.is_file():
        shipped = SUITES_DIR / f"{name_or_path}.toml"
        if shipped.is_file():
            p = shipped
        elif os.path.lexists(p):
            raise GptlabError(f"{p}: not a suite file (a directory, FIFO or device, not a regular file)")
        else:
            names = ", ".join(sorted(q.stem for q in SUITES_DIR.glob("*.toml")))
            raise GptlabError(f"{shown(str(name_or_path), 200)}: no such suite file or shipped suite "
                              f"(shipped: {names})")
    return parse_suite(read_text_file(p, "suite file", MAX_FILE_BYTES), str(p))


def describe(suite: Suite, full: bool = False) -> str:
    """The listing `gptlab probes` prints: one line per probe, or every field with --full."""
    lines = [f"suite {suite.name} v{suite.version}: {len(suite.probes)} probes ({suite.path})"]
    if suite.description:
        lines.append(suite.description.strip())
    width = max(len(p.name) for p in suite.probes)
    for p in suite.probes:
        tags = [t for t in (p.language, "tests" if p.tests else None,
                            "requires " + ",".join(p.requires) if p.requires else None,
                            f"twin of {p.twin_of}" if p.twin_of else None) if t]
        if not full:
            first = p.prompt.strip().splitlines()[0]
            first = first if len(first) <= 60 else first[:57] + "..."
            lines.append(f"  {p.name:<{width}}  {p.domain:<8} {first!r}" + (f"  [{'; '.join(tags)}]" if tags else ""))
            continue
        lines.append(f"\n[{p.name}]  domain {p.domain}  hash {p.probe_hash}" + (f"  [{'; '.join(tags)}]" if tags else ""))
        if p.description:
            lines.append(f"  {p.description}")
        lines.append("  prompt:\n" + _indent(p.prompt))
        for key in ("code_prefix", "tests", "schema"):
            if getattr(p, key):
                lines.append(f"  {key}:\n" + _indent(getattr(p, key)))
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    | " + ln for ln in text.splitlines())
