"""Claims as data: statements about models, each checked against stored measurements with a verdict and the
numbers behind it.

    gptlab check examples/claims.toml --db results.sqlite
    python -m pytest tests/test_claims.py

The file (schema version 1; every key below, any other is an error naming the claim):

    version = 1                          # required: the schema version
    title = "..."                        # optional
    suite = "default"                    # optional: count only this suite's probes (default: every stored one)
    temperature = 0.8                    # optional: samples at this temperature (default as in compare)
    [models]                             # aliases: a run directory, a checkpoint, a run name; PATH@STEP
    code = "runs/code_heavy"
    [[claims]]
    statement = "The code-trained model beats the prose-trained one on code"
    comment = "..."                      # optional, shown with the verdict
    margins = { true = 0.05, mostly_true = 0.0, false = 0.0 }    # optional; each defaults to 0
    [claims.check]                       # or inline, on one line: check = { kind = "less", ... }
    kind = "less"
    left = { model = "code", metric = "bpb", group = "code" }
    right = { model = "prose", metric = "bpb", group = "code" }

A measurement may instead name a `ladder` and a `size` (a prediction from `gptlab ladder`'s fits, e.g.
`{ ladder = "ladder-demo", size = "4x", metric = "pass_at_k", probe = "code_add" }`; gptlab/compare/claims_ladder.py),
and then [models] may be empty.

Checks (`kind`): `less` / `greater` (left vs right measurement), `below` / `above` (left vs a number `value`),
`order` (`models = [best, ..., worst]` on one `measure` table without `model`; `better = "lower"|"higher"`,
default lower for bpb and failure rates, higher for pass@k). A measurement is a table with `model` and
`metric`:

    bpb                    domain = NAME | group = NAME | neither: every domain (pooled)
    failure_rate           mode = MODE | "any" (default); probe = NAME or [NAMES] | domain = NAME |
                           prompts = "short" | "long" | none: all probes; max_tokens = N (default: all lengths)
    pass_at_k              k = N (default 1); probe / domain / prompts as above; max_tokens = N (default:
                           the longest samples). rollup.pass_at_k per probe, averaged over probes
    prompt_length_effect   of = "failure_rate" (default; mode as above) | "pass_at_k" (k); short - long twins

Verdict. d is how far the claim holds, in the metric's units (less: right - left; greater: left - right;
below: value - left; above: left - value; order: the smallest d over neighbours). With its 95 % bootstrap
interval [lo, hi] (gptlab/stats/bootstrap.py):
    true          lo > margins.true                  the whole interval clears the "true" margin
    mostly true   d > margins.mostly_true            the estimate clears it, the interval does not
    false         hi <= margins.false                the whole interval says the claim does not hold
    inconclusive  otherwise                          the data cannot tell
Margins must satisfy false <= mostly_true <= true. Nothing in the file is evaluated as code: each field is
read as the type above. Any bad input (not TOML, a wrong type, a number out of range, a file over
MAX_FILE_BYTES or that is not a regular file) is a GptlabError in one line, whatever the file holds: text
from the file is quoted with its control characters escaped (tests/test_fuzz_inputs.py fuzzes this).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from gptlab.compare.claims_ladder import parse_ladder_measure
from gptlab.compare.measurements import ANY
from gptlab.diagnose import MODES
from gptlab.errors import GptlabError
from gptlab.textfile import parse_toml, read_text_file, shown, shown_repr
from gptlab.stats import bootstrap as stats
from gptlab.verdicts import ClaimVerdict

SCHEMA_VERSION = 1
VERDICTS = tuple(ClaimVerdict)        # best first
KINDS = {"less": {"left", "right"}, "greater": {"left", "right"}, "below": {"left", "value"},
         "above": {"left", "value"}, "order": {"models", "measure", "better"}}
_SAMPLE_SELECT = {"probe", "domain", "prompts"}
METRICS = {"bpb": {"domain", "group"},
           "failure_rate": {"mode", "max_tokens"} | _SAMPLE_SELECT,
           "pass_at_k": {"k", "max_tokens"} | _SAMPLE_SELECT,
           "prompt_length_effect": {"of", "mode", "k"}}
LOWER_IS_BETTER = {"bpb": True, "failure_rate": True, "pass_at_k": False}
_TOP = {"version", "title", "suite", "temperature", "models", "claims"}
_CLAIM = {"statement", "comment", "check", "margins"}
_MARGINS = ("true", "mostly_true", "false")
MAX_FILE_BYTES = 4 * 2**20      # a claims file is a few KB; more is not a claims file


@dataclass
class Claim:
    index: int
    statement: str
    check: dict
    margins: dict[str, float]
    comment: str = ""


@dataclass
class ClaimsFile:
    path: str
    models: dict[str, str]
    claims: list[Claim]
    title: str = ""
    suite: str | None = None
    temperature: float | None = None


@dataclass
class Result:
    statement: str
    verdict: ClaimVerdict
    evidence: str
    margin: stats.Interval | None
    parts: list[tuple[str, stats.Interval]] = field(default_factory=list)
    comment: str = ""


def _number(value, where) -> float:
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:                               # an integer beyond the range of a float
        number = math.nan
    if not math.isfinite(number):
        raise GptlabError(f"{where} must be a number, got {shown_repr(value)}")
    return number


def _str(value, where) -> str:
    if not isinstance(value, str) or not value.strip():
        raise GptlabError(f"{where} must be a non-empty string, got {shown_repr(value)}")
    return value


def _int(value, where, low=1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise GptlabError(f"{where} must be a whole number >= {low}, got {shown_repr(value)}")
    return value


def _measure(raw, where, models, with_model=True) -> dict:
    if not isinstance(raw, dict):
        raise GptlabError(f"{where} must be a table like {{ model = \"A\", metric = \"bpb\" }}, got {shown_repr(raw)}")
    if with_model and "ladder" in raw:
        return parse_ladder_measure(raw, where)
    metric = raw.get("metric")
    if not isinstance(metric, str) or metric not in METRICS:
        raise GptlabError(f"{where}.metric must be one of {', '.join(METRICS)}, got {shown_repr(metric)}")
    allowed = METRICS[metric] | {"metric"} | ({"model"} if with_model else set())
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise GptlabError(f"{where} has unknown key '{shown(unknown[0])}' for metric {metric} "
                          f"(known: {', '.join(sorted(allowed))})")
    out = {"metric": metric}
    if with_model:
        if "model" not in raw:
            raise GptlabError(f"{where} needs model = one of the aliases in [models]")
        out["model"] = _alias(raw["model"], f"{where}.model", models)
    for key in ("domain", "group", "mode"):
        if key in raw:
            out[key] = _str(raw[key], f"{where}.{key}")
    for key in ("k", "max_tokens"):
        if key in raw:
            out[key] = _int(raw[key], f"{where}.{key}")
    if "probe" in raw:
        probe = raw["probe"]
        probes = [probe] if isinstance(probe, str) else probe
        if not isinstance(probes, list) or not probes:
            raise GptlabError(f"{where}.probe must be a probe name or a list of them, got {shown_repr(probe)}")
        out["probe"] = [_str(p, f"{where}.probe") for p in probes]
    if "prompts" in raw and raw["prompts"] not in ("short", "long"):
        raise GptlabError(f"{where}.prompts must be \"short\" or \"long\", got {shown_repr(raw['prompts'])}")
    out.update({k: raw[k] for k in ("prompts",) if k in raw})
    if "of" in raw and raw["of"] not in ("failure_rate", "pass_at_k"):
        raise GptlabError(f"{where}.of must be \"failure_rate\" or \"pass_at_k\", got {shown_repr(raw['of'])}")
    out["of"] = raw.get("of", "failure_rate") if metric == "prompt_length_effect" else None
    chosen = [k for k in (("domain", "group") if metric == "bpb" else sorted(_SAMPLE_SELECT)) if k in raw]
    if len(chosen) > 1:
        raise GptlabError(f"{where}: give at most one of {' / '.join(chosen)}")
    if "mode" in out and out["of"] == "pass_at_k":
        raise GptlabError(f"{where}.mode is for failure rates, not pass@k")
    if "k" in out and out["of"] == "failure_rate":
        raise GptlabError(f"{where}.k is for pass@k, not failure rates")
    if "mode" in out:
        if out["mode"] not in (ANY, *MODES):
            raise GptlabError(f"{where}.mode {shown_repr(out['mode'])} is not a failure mode "
                              f"(modes: any, {', '.join(MODES)})")
    return out


def _alias(value, where, models) -> str:
    if not isinstance(value, str) or value not in models:
        known = ", ".join(shown(m) for m in models) or "none"
        raise GptlabError(f"{where} {shown_repr(value)} is not defined in [models] (defined: {shown(known, 200)})")
    return value


def _claim(raw, index, models, where) -> Claim:
    label = f"{where}: claim {index + 1}"
    if not isinstance(raw, dict):
        raise GptlabError(f"{label}: each [[claims]] entry must be a table")
    statement = raw.get("statement")
    if isinstance(statement, str) and statement.strip():
        label = f"{label} ('{shown(statement)}')"
    else:
        raise GptlabError(f"{label}: missing 'statement' (a non-empty string)")
    unknown = sorted(set(raw) - _CLAIM)
    if unknown:
        raise GptlabError(f"{label}: unknown key '{shown(unknown[0])}' (known: {', '.join(sorted(_CLAIM))})")
    check = raw.get("check")
    if not isinstance(check, dict):
        raise GptlabError(f"{label}: missing check = {{ kind = ..., ... }}")
    kind = check.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise GptlabError(f"{label}: check.kind must be one of {', '.join(KINDS)}, got {shown_repr(kind)}")
    unknown = sorted(set(check) - KINDS[kind] - {"kind"})
    if unknown:
        raise GptlabError(f"{label}: check has unknown key '{shown(unknown[0])}' for kind {kind} "
                          f"(known: kind, {', '.join(sorted(KINDS[kind]))})")
    missing = sorted(KINDS[kind] - set(check) - {"better"})
    if missing:
        raise GptlabError(f"{label}: check of kind {kind} needs '{missing[0]}'")
    parsed = {"kind": kind}
    try:
        if kind == "order":
            order = check["models"]
            if not isinstance(order, list) or len(order) < 2:
                raise GptlabError(f"check.models must list at least two aliases, best first, got {shown_repr(order)}")
            parsed["models"] = [_alias(m, "check.models", models) for m in order]
            parsed["measure"] = _measure(check["measure"], "check.measure", models, with_model=False)
            better = check.get("better")
            if better is None:
                metric = parsed["measure"]["metric"]
                if metric not in LOWER_IS_BETTER:
                    raise GptlabError(f"check.better (\"lower\" or \"higher\") is needed for {metric}")
                better = "lower" if LOWER_IS_BETTER[metric] else "higher"
            if better not in ("lower", "higher"):
                raise GptlabError(f"check.better must be \"lower\" or \"higher\", got {shown_repr(better)}")
            parsed["better"] = better
        else:
            parsed["left"] = _measure(check["left"], "check.left", models)
            if "right" in KINDS[kind]:
                parsed["right"] = _measure(check["right"], "check.right", models)
            else:
                parsed["value"] = _number(check["value"], "check.value")
        margins = raw.get("margins", {})
        if not isinstance(margins, dict):
            raise GptlabError("margins must be a table like { true = 0.05, mostly_true = 0.0, false = 0.0 }")
        unknown = sorted(set(margins) - set(_MARGINS))
        if unknown:
            raise GptlabError(f"margins has unknown key '{shown(unknown[0])}' (known: {', '.join(_MARGINS)})")
        m = {k: _number(margins[k], f"margins.{k}") if k in margins else 0.0 for k in _MARGINS}
        if not m["false"] <= m["mostly_true"] <= m["true"]:
            raise GptlabError(f"margins must satisfy false <= mostly_true <= true, got false = {m['false']:g}, "
                              f"mostly_true = {m['mostly_true']:g}, true = {m['true']:g}")
    except GptlabError as e:
        raise GptlabError(f"{label}: {e}") from None
    comment = raw.get("comment", "")
    if not isinstance(comment, str):
        raise GptlabError(f"{label}: comment must be a string")
    return Claim(index, statement, parsed, m, comment)


def parse_claims(text: str, where: str) -> ClaimsFile:
    raw = parse_toml(text, where)
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise GptlabError(f"{where}: unknown top-level key '{shown(unknown[0])}' "
                          f"(known: {', '.join(sorted(_TOP))})")
    version = raw.get("version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise GptlabError(f"{where}: version must be {SCHEMA_VERSION} (the claims schema this gptlab reads), "
                          f"got {shown_repr(version)}")
    models = raw.get("models", {})
    if not isinstance(models, dict):
        raise GptlabError(f"{where}: [models] must be a table of aliases, e.g. A = \"runs/code_heavy\"")
    for alias, target in models.items():
        _str(target, f"{where}: [models] {shown(alias)}")
    claims = raw.get("claims")
    if not isinstance(claims, list) or not claims:
        raise GptlabError(f"{where}: no [[claims]]: nothing to check")
    parsed = [_claim(c, i, models, where) for i, c in enumerate(claims)]
    if not models and not any(uses_ladder(c.check) for c in parsed):
        raise GptlabError(f"{where}: [models] must define at least one alias, e.g. A = \"runs/code_heavy\"")
    suite = raw.get("suite")
    temperature = raw.get("temperature")
    return ClaimsFile(where, dict(models), parsed,
                      title=_str(raw["title"], f"{where}: title") if "title" in raw else "",
                      suite=None if suite is None else _str(suite, f"{where}: suite"),
                      temperature=None if temperature is None else _number(temperature, f"{where}: temperature"))


def load_claims(path: str | Path) -> ClaimsFile:
    return parse_claims(read_text_file(path, "claims file", MAX_FILE_BYTES), str(Path(path)))


def aliases_of(check: dict) -> list[str]:
    if check["kind"] == "order":
        return list(check["models"])
    return [check[side]["model"] for side in ("left", "right") if side in check and "model" in check[side]]


def uses_ladder(check: dict) -> bool:
    return any("ladder" in check.get(side, {}) for side in ("left", "right"))
