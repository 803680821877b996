"""no_code: a code probe answered without code in its language.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_code.py -k "no_code or line_classes or prose"

Read on the completion's part of the program (program.py), with strings and comments blanked
(languages.mask), each non-blank line is one of:
* code: it shows a construct of the probe's language (languages.MARKERS);
* foreign: constructs of other languages only (`os.environ['PORT']` in a Go probe);
* prose: >= 4 words of which >= 70% are plain words (letters, with sentence punctuation at most), and at
  most one code shape (`a + b`, `==`, `f(`) per 12 words;
* plain: no construct of any language and not prose (`x = y + 1`, `return x`, `PORT=8080`): such a line
  is valid in many languages, so it is shared out like the marked lines around it. With k code and f
  foreign lines, it counts k/(k+f) code and f/(k+f) foreign; with neither, it counts as code;
* in Java, an unmarked line ending in a name or `]` is foreign: no Java statement ends there;
* neutral: closing brackets only (`}`, `});`) — they say nothing about who wrote them.
Each judged line weighs its non-blank characters: one paragraph of prose is one long line, and should not
weigh as much as one `return x`. `code_share` = code weight / (code + foreign + prose weight).
The failure: no code or plain line at all, or code_share < CODE_SHARE.
Comments alone are not code. Empty completions fail with "empty".
"""

from __future__ import annotations

import re

from gptlab.diagnose.languages import MARKERS, mask, own_languages
from gptlab.diagnose.program import Program
from gptlab.diagnose.registry import detector
from gptlab.diagnose.text import clip
from gptlab.diagnose.types import Finding

CODE_SHARE = 0.3
_PLAIN_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[.,;:!?]?")
_NEUTRAL = re.compile(r"^[\s)\]};,]*$")


def classify_line(raw: str, masked: str, language: str) -> str:
    """'code', 'foreign', 'prose', 'plain' or 'neutral' for one line of the completion."""
    if _NEUTRAL.match(masked):
        return "neutral"
    own = set(own_languages(language))
    hits = [langs for pattern, langs in MARKERS if pattern.search(masked)]
    if any(langs & own for langs in hits):
        return "code"
    if hits:
        return "foreign"
    if _is_prose(raw):
        return "prose"
    if language == "java" and re.search(r"[\w\]]\s*$", masked):
        return "foreign"   # every Java statement ends in ; { } or an operator; `best = v` is not Java
    return "plain"


# an operator between operands or a call: "return x * x", "a == b", "f(x)"; prose has almost none
_CODE_SHAPE = re.compile(r"\w\s+[-+*/%]\s+\w|[=!<>]=|\w\(")
_WORDS_PER_SHAPE = 12


def _is_prose(line: str) -> bool:
    """>= 4 tokens, >= 70% of them plain words, and at most one code shape per _WORDS_PER_SHAPE tokens: a
    paragraph may mention `next()`, a line of code is mostly shapes."""
    tokens = line.split()
    if len(tokens) < 4 or len(_CODE_SHAPE.findall(line)) * _WORDS_PER_SHAPE > len(tokens):
        return False
    plain = sum(1 for t in tokens if _PLAIN_WORD.fullmatch(t))
    return plain / len(tokens) >= 0.7


@detector("no_code", scope="code")
def no_code(program: Program, language: str) -> Finding:
    if not program.kept.strip():
        reason = f"nothing before the stop rule ({program.cut})" if program.cut else "empty completion"
        return Finding(True, {"code_lines": 0, "code_share": 0.0}, {"reason": reason})
    masked = mask(program.text, language)[len(program.prefix):]
    counts = {"code": 0, "foreign": 0, "prose": 0, "plain": 0, "neutral": 0}
    weight = dict.fromkeys(counts, 0)
    examples: dict[str, str] = {}
    for raw, m in zip(program.kept.splitlines(), masked.splitlines()):
        if not m.strip():
            continue    # blank, or a comment / string line
        kind = classify_line(raw, m, language)
        counts[kind] += 1
        weight[kind] += len("".join(raw.split()))
        examples.setdefault(kind, raw)
    marked = counts["code"] + counts["foreign"]
    own = counts["code"] / marked if marked else 1.0     # how the plain lines are shared out
    code = weight["code"] + own * weight["plain"]
    judged = weight["code"] + weight["plain"] + weight["foreign"] + weight["prose"]
    share = code / judged if judged else 0.0
    metrics = {"code_lines": counts["code"], "plain_lines": counts["plain"], "prose_lines": counts["prose"],
               "foreign_lines": counts["foreign"], "code_share": round(share, 3)}
    if code and share >= CODE_SHARE:
        return Finding(False, metrics)
    if not judged:
        reason = "only comments and closing brackets"
    elif not code:
        reason = f"no line is {language} code"
    else:
        reason = f"{share:.0%} of the completion's code and prose is {language} code"
    evidence = {"reason": reason}
    for kind in ("prose", "foreign"):
        if kind in examples:
            evidence[f"{kind}_example"] = clip(examples[kind], 160)
    return Finding(True, metrics, evidence)
