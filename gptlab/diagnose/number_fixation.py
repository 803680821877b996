"""number_fixation: a prose completion degenerates into runs of numbers, repeated, copied or counted.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_detectors.py -k number_fixation

A number run is a stretch of figures separated by at most one other word (units such as "million" or "%" are
part of the figure), as in "1.8, 1.5, 1.6, 1.8, 1.5". A line that ends in a figure followed by a line that
starts with a word ends the run: that is a table's next row and its label ("First quarter $0.22 $0.20" /
"Second quarter $0.22 $0.20"), and equal figures in labelled rows are data. A figure in a run is
*predictable* when its value already appeared (in the prompt or earlier in the completion) or when it
continues a progression, of the figures before it or of every other figure before it, for a fourth term or
more ("1863, 1864, 1865, 1866"; "300 by $7.5 million, 400 by $10.0 million, ..."): the model is copying or
counting, not stating. `number_run_predictable_share` = the predictable fraction of the run.

The failure: a run of >= RUN_MIN figures with that share >= RUN_PREDICTABLE_SHARE; a data table of fresh
figures does not fail.
"""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal, InvalidOperation

from gptlab.diagnose.registry import detector
from gptlab.diagnose.text import NUMBER_RE, NUMBER_WORDS, WORD_RE, clip, number_value
from gptlab.diagnose.types import Finding

RUN_MIN = 6
RUN_PREDICTABLE_SHARE = 0.5
_MAX_GAP_WORDS = 1

_ROW_BREAK = re.compile(r"^[ \t]*\n\s*[A-Za-z]")                      # figure, end of line, a row label


def _figures_and_gaps(text: str) -> list[tuple[str, int, int, int]]:
    """Each figure in `text` as (value, start, end, words since the previous figure)."""
    out = []
    last_end = 0
    for m in NUMBER_RE.finditer(text):
        gap = text[last_end:m.start()]
        between = [w for w in WORD_RE.findall(gap) if w.lower() not in NUMBER_WORDS]
        value = number_value(m.group())
        if value:
            new_row = out and _ROW_BREAK.match(gap)
            out.append((value, m.start(), m.end(), _MAX_GAP_WORDS + 1 if new_row else len(between)))
            last_end = m.end()
    return out


def _decimal(value: str) -> Decimal | None:
    try:
        return Decimal(value)
    except InvalidOperation:     # "4.2.1": malformed_figure's business
        return None


def _continues_progression(values: list[Decimal | None], i: int, start: int) -> bool:
    """values[i] is at least the fourth term of a progression of the run's figures (lag 1), or of every
    other one (lag 2: "300 by $7.5 million, 400 by $10.0 million"). Three terms are a 10-K's "fiscal
    2024, 2023 and 2022"; a fourth, fifth, ... is counting."""
    for lag in (1, 2):
        if i - 3 * lag < start:
            return False
        terms = values[i - 3 * lag:i + 1:lag]
        if None not in terms and terms[1] != terms[0] \
                and terms[3] - terms[2] == terms[2] - terms[1] == terms[1] - terms[0]:
            return True
    return False


@detector("number_fixation", scope="prose")
def number_fixation(prompt: str, completion: str) -> Finding:
    figures = _figures_and_gaps(completion)
    n_words = len(WORD_RE.findall(completion))
    metrics = {"numbers": len(figures), "number_share": round(len(figures) / n_words, 3) if n_words else 0.0,
               "longest_number_run": 0, "number_run_predictable_share": 0.0}
    if not figures:
        return Finding(False, metrics)
    seen = Counter(number_value(m.group()) for m in NUMBER_RE.finditer(prompt))
    values = [_decimal(value) for value, _, _, _ in figures]
    runs = []   # [first index, last index, predictable figures]
    for i, (value, _, _, gap) in enumerate(figures):
        if not runs or gap > _MAX_GAP_WORDS:
            runs.append([i, i, 0])
        runs[-1][1] = i
        runs[-1][2] += seen[value] > 0 or _continues_progression(values, i, runs[-1][0])
        seen[value] += 1

    def qualifies(run):
        length = run[1] - run[0] + 1
        return length >= RUN_MIN and run[2] / length >= RUN_PREDICTABLE_SHARE

    failing = [r for r in runs if qualifies(r)]
    first, last, predictable = max(failing or runs, key=lambda r: r[1] - r[0])
    length = last - first + 1
    metrics.update(longest_number_run=max(r[1] - r[0] + 1 for r in runs),
                   number_run_predictable_share=round(predictable / length, 3))
    if failing:
        span = completion[figures[first][1]:figures[last][2]]
        return Finding(True, metrics, {"run": clip(span, 200), "numbers": length,
                                       "predictable": round(predictable / length, 3), "offset": figures[first][1]})
    return Finding(False, metrics)
