"""malformed_figure: a financial figure no filing would print, such as "$5.42%", "$1,23,456", "4.2.1 billion".

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_detectors.py -k figure

A figure is in a money context when it carries a currency sign or is followed by a magnitude word
(thousand, million, billion, trillion) or a percent sign/word, or when it is a table cell (another figure
or the line's end follows it) on a line that holds such a figure ("5.125% Senior notes due 2031 400.0").
The rules, each with its name in evidence:
* currency_percent: a currency amount that is also a percentage ("$5.42%", "$3 percent");
* bad_grouping: thousands separators not in groups of three, in a money context, with >= 3 groups, or
  with a decimal part ("$1,23,456", "12,3456 million", "2,37.5"; a bare "2023,2024" is a list, not a figure);
* several_decimal_points: "4.2.1 billion", "$3.4.5" (section numbers such as "Note 4.2.1" have no money
  context and pass);
* doubled_sign: "$$5", "5%%", "5.4$";
* stray_point: a decimal point with no digits after it, before a percent sign ("62.5.%", "12.%");
* stacked_units: a percentage with a magnitude ("12% million") or two magnitudes ("4 million billion");
* glued_group: a thousands group after the magnitude word ("$381 million,000").
Its false alarms on real filings are measured by bench/diagnose_calibrate.py.
"""

from __future__ import annotations

import bisect
import re

from gptlab.diagnose.registry import detector
from gptlab.diagnose.text import clip
from gptlab.diagnose.types import Finding

_MAG = r"(?:thousand|million|billion|trillion)s?"
_CUR = r"[$€£]"
_FIGURE_RE = re.compile(
    rf"(?P<cur>{_CUR}\s?)?\(?(?P<num>\d[\d,.]*\d|\d)\)?(?P<tail>\s?(?:%|percent\b|{_MAG}\b))?", re.IGNORECASE)
_RULES = (
    ("doubled_sign", re.compile(rf"{_CUR}\s?{_CUR}\s?\d|\d(?:\.\d+)?\s?%\s?%|\d{_CUR}", re.IGNORECASE)),
    ("stacked_units", re.compile(rf"\d\s?(?:%|percent)\s+{_MAG}\b|\d\s?{_MAG}\s+{_MAG}\b", re.IGNORECASE)),
    ("stray_point", re.compile(r"\d\.%(?![a-z])")),      # not a format string's `'7.%s`
    ("glued_group", re.compile(rf"\d\s?{_MAG},\d{{3}}\b", re.IGNORECASE)),
)


# a table cell: another figure, or the line's end, comes next
_CELL_END = re.compile(r"[ \t]+[$€£(]?\d|[ \t]*(?:\n|$)")


def _is_money(m: re.Match) -> bool:
    return bool(m.group("cur")) or bool((m.group("tail") or "").strip())


def _problem(m: re.Match, money_line: bool) -> str | None:
    num, cur, tail = m.group("num"), m.group("cur"), (m.group("tail") or "").strip().lower()
    money = _is_money(m) or money_line
    percent = tail in ("%", "percent")
    if cur and percent:
        return "currency_percent"
    if num.count(".") >= 2 and money:
        return "several_decimal_points"
    if "," in num:
        integer = num.split(".")[0]
        groups = integer.split(",")
        grouped_badly = len(groups[0]) > 3 or any(len(g) != 3 for g in groups[1:])
        # without money context only the lakh-style "1,23,456" is a figure; "1,2,3" is a list
        lakh = len(groups) >= 3 and len(groups[-1]) == 3
        decimal = num.count(".") == 1 and num.index(".") > num.rindex(",")
        if grouped_badly and (money or lakh or decimal) and "" not in groups:
            return "bad_grouping"
    return None


def _widen(text: str, start: int, end: int) -> str:
    """The whole figure around a match ("5.4$ million", not "4$"): out to the surrounding spaces."""
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:end].strip(" ,;:")


@detector("malformed_figure", scope="prose")
def malformed_figure(completion: str) -> Finding:
    problems = []
    figures = 0
    matches = list(_FIGURE_RE.finditer(completion))
    newlines = [i for i, c in enumerate(completion) if c == "\n"]
    lines = [bisect.bisect(newlines, m.start()) for m in matches]
    money_lines = {line for m, line in zip(matches, lines) if _is_money(m)}
    for m, line in zip(matches, lines):
        figures += 1
        cell = _CELL_END.match(completion, m.end()) is not None
        kind = _problem(m, cell and line in money_lines)
        if kind:
            problems.append((m.start(), m.end(), kind))
    for kind, pattern in _RULES:
        for m in pattern.finditer(completion):
            if not any(s <= m.start() < e for s, e, _ in problems):
                problems.append((m.start(), m.end(), kind))
    metrics = {"figures": figures, "malformed_figures": len(problems)}
    if not problems:
        return Finding(False, metrics)
    problems.sort()
    shown = [{"figure": clip(_widen(completion, s, e), 40), "rule": kind, "offset": s} for s, e, kind in problems]
    return Finding(True, metrics, {"figures": shown[:5], "count": len(problems)})
