"""no_code: a code probe answered without code in its language.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_code.py -k "no_code or line_classes or prose"

Read on the completion's part of the program (program.py), with strings and comments blanked
(languages.mask), each non-blank line is one of:
* code: it shows a construct of the probe's language (languages.MARKERS), unless its only such constructs are
  ones SHARED by >= 3 languages (`{` at the end, a trailing `;`) and it also shows one only another language
  has: `func (t *C) Len() int {` and Go's `if x {` under a Java probe are foreign;
* foreign: constructs of other languages only (`os.environ['PORT']` in a Go probe), or as just said;
* prose: >= 4 words of which >= 70% are plain words (letters, with sentence punctuation at most), and at
  most one code shape (`a + b`, `==`, `f(`) per 12 words; a line of >= PARAGRAPH_WORDS such words is prose even
  when it holds a construct (`Plolang=None` inside a paragraph);
* plain: no construct of any language and not prose, but shaped like a statement (`x = y + 1`, `return x`,
  `f(x);`, `PORT=8080`): such a line is valid in many languages, so it is shared out like the marked lines
  around it. With k code and f foreign lines, it counts k/(k+f) code and f/(k+f) foreign; with neither, it
  counts as code, unless the completion uses more words only the suite's other languages have than words only
  the probe's language has (DISTINCT, below; a Python triple quote counts as a Python word): then as foreign
  (`return x` and `x = y` between Python docstrings under a Go probe are Python's); and unless the completion
  has no word of the language at all (DISTINCT or KEYWORDS) and the plain lines' names are not words or code
  names (`_named`: a character-level model's `dasern = "` is not code; `total += values[i]` is);
* junk: neither marked, nor prose, nor shaped like a statement, nor using a keyword of the probe's language
  (`3)`, `0 rcn`, `teinttiproref tithhurfhu o`: what a model writes before it has learned the language; a
  broken line with the language's keywords, `for __c, empailstd)`, is plain): shared out like a plain line
  when some line of the completion is code in the probe's language, or the completion's code uses more words
  only the probe's language has (DISTINCT: `self`, `elif` and the triple quote for Python; `func`, `nil` for
  Go) than words only the suite's other languages have (broken code: Python junk full of `self` and `elif` in
  a Python probe; the same junk in a Go probe stays no code), otherwise not code;
* in Java, an unmarked line ending in a name or `]` is foreign: no Java statement ends there;
* an unmarked line that uses a word only the probe's language has (DISTINCT, below: `x is None` in Python,
  `v == nil` in Go) is code;
* neutral: closing brackets only (`}`, `});`) — they say nothing about who wrote them.
The first line goes on writing the prefix's last line when that line is unfinished (the SQL probes' `SELECT`):
it is code when the two together show a construct the prefix alone does not (`SELECT` + ` * FROM orders`).
Each judged line weighs its non-blank characters: one paragraph of prose is one long line, and should not
weigh as much as one `return x`. `code_share` = code weight / (code + foreign + prose weight).
The failure: no code or plain line at all, or code_share < CODE_SHARE.
When the program's part has no code line, or fails, the whole completion decides instead: the same reading
on what precedes the end-of-text marker or closing fence (Program.read), so that no_code means no code in the
probe's language anywhere in what the model wrote, not just before the stop rule. A SQL answer whose first
statement is junk but whose next is a real CREATE VIEW is broken code, not no code; plain lines before a page
of Python in a SQL probe are no code. A program with a code line that passes keeps its verdict, whatever
follows the stop rule (junk after a finished method is not the answer); so does one that passes on plain
lines alone when all that follows is prose (`return x * x`, then a paragraph explaining it). A verdict of
the whole completion says so in metrics (`judged_on`).
Comments alone are not code, but a completion that is all inside a string or comment it never closes (a
docstring opened and left open, code written inside it) is read as written. Empty completions fail with
"empty".
"""

from __future__ import annotations

import re

from gptlab.diagnose.invented_words import code_names, is_english
from gptlab.diagnose.languages import MARKERS, mask, own_languages
from gptlab.diagnose.program import Program
from gptlab.diagnose.registry import detector
from gptlab.diagnose.text import clip
from gptlab.diagnose.types import Finding

CODE_SHARE = 0.3
PARAGRAPH_WORDS = 20     # words of a prose line that outweigh one construct in it
SHARED = 3      # a construct of this many languages or more says little about which one wrote the line
_PLAIN_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[.,;:!?]?")
_NEUTRAL = re.compile(r"^[\s)\]};,]*$")


def classify_line(raw: str, masked: str, language: str) -> str:
    """'code', 'foreign', 'prose', 'plain', 'junk' or 'neutral' for one line of the completion."""
    if _NEUTRAL.match(masked):
        return "neutral"
    if len(raw.split()) >= PARAGRAPH_WORDS and _is_prose(raw):
        return "prose"     # a paragraph that happens to hold one construct (`Plolang=None`) is still prose
    own = set(own_languages(language))
    hits = [langs for pattern, langs in MARKERS if pattern.search(masked)]
    mine = [langs for langs in hits if langs & own]
    if mine and (any(len(langs) < SHARED for langs in mine) or all(langs & own for langs in hits)):
        return "code"
    if hits:
        return "foreign"   # another's construct, maybe beside one that many share (`{`): `func f() {`
    if _is_prose(raw):
        return "prose"
    if language == "java" and re.search(r"[\w\]]\s*$", masked):
        return "foreign"   # every Java statement ends in ; { } or an operator; `best = v` is not Java
    if any(DISTINCT[lang] & set(_BARE_NAME.findall(masked)) for lang in own):
        return "code"    # a word only the probe's language has: `x is None`, `if v == nil`
    names = set(re.findall(r"[A-Za-z_]\w*", masked))
    if _STATEMENT.match(raw) or _STATEMENT.match(masked) or any(KEYWORDS[lang] & names for lang in own):
        return "plain"   # a statement, or broken code that uses the language's own words
    return "junk"


# words that make a broken line recognisably an attempt at the language ("def __c, empailstd)")
KEYWORDS = {lang: frozenset(words.split()) for lang, words in {
    "python": "def return self if elif else for while in import from class None True False isinstance len "
              "print lambda yield try except raise with not and or range",
    "go": "func return var const if else for range err nil package import struct chan defer go fmt make len",
    "java": "public private protected static void int long boolean String return new class if else for while "
            "null this throw throws extends implements final",
    "javascript": "function return const let var if else for while null undefined this new class async await "
                  "export import console",
    "jsx": "function return const let var if else for while null undefined this new class async await export "
           "import console className props useState useEffect",
    "sql": "SELECT FROM WHERE GROUP BY ORDER JOIN ON AS AND OR COUNT SUM AVG LIMIT HAVING select from where "
           "group by order join on as and or count sum avg limit having",
}.items()}

# words that no other language of the suite uses and no English sentence does (not `boolean`, SQL has it; not
# `except` or `defer`): junk that has more of the probe language's than of the others' is broken code
DISTINCT = {lang: frozenset(words.split()) for lang, words in {
    "python": "def self elif None True False isinstance lambda",
    "go": "func nil chan fmt struct",
    "java": "void throws",
    "javascript": "const",
    "jsx": "const className props useState useEffect",
    "sql": "SELECT WHERE GROUP HAVING",
}.items()}


_BARE_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*")   # not a property: `PropTypes.func` is JavaScript


def _others_words(language: str) -> frozenset[str]:
    own = own_languages(language)
    other = frozenset().union(*(DISTINCT[lang] for lang in DISTINCT if lang not in own))
    return other - frozenset().union(*(KEYWORDS.get(lang, frozenset()) for lang in own))


# a statement in most languages: a keyword statement, an assignment, a call, or an expression of operands
_STATEMENT = re.compile(
    r"^\s*(return|break|continue|pass|yield|throw|raise|else|end|done|fi)\b"
    r"|^\s*[\w.$\[\]'\"]+\s*(\[[^\]]*\]\s*)?([-+*/%&|^]|<<|>>|\*\*|//)?=(?!=)\s*\S"
    r"|^\s*[\w.$]+\s*\(.*\)\s*[;,]?\s*$"
    r"|^\s*[\w.$()\[\]]+(\s*([-+*/%<>]|==|!=|&&|\|\||\band\b|\bor\b)\s*[\w.$()\[\]'\"]+)+\s*[;,:]?\s*$"
    r"|^\s*[\w.$]+\s*[;,]?\s*$")


# an operator between operands or a call: "return x * x", "a == b", "f(x)"; prose has almost none
_CODE_SHAPE = re.compile(r"\w\s+[-+*/%]\s+\w|[=!<>]=|\w\(")
_WORDS_PER_SHAPE = 12


def _distinct_counts(raw: str, masked: str, language: str) -> tuple[int, int]:
    """How many words only the probe's language has, and how many only the suite's others have (a Python
    docstring's triple quote counts as a Python word: no other language of the suite writes one)."""
    words = _BARE_NAME.findall(masked)
    langs = own_languages(language)
    own = frozenset().union(*(DISTINCT[lang] for lang in langs))
    others = _others_words(language)
    quotes = raw.count('"""') + raw.count("'''")
    n_own = sum(w in own for w in words) + (quotes if "python" in langs else 0)
    n_other = sum(w in others for w in words) + (0 if "python" in langs else quotes)
    return n_own, n_other


def ends_open(text: str, language: str) -> bool:
    """`text` ends inside a string or comment that never closes (a docstring opened and left open)."""
    return _SENTINEL not in mask(text + "\n" + _SENTINEL, language)


_SENTINEL = "zq_open_zq"


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
    found = _judge(program.prefix, program.kept, language, program.cut)
    if (found.metrics["code_lines"] and not found.failed) or program.read == program.kept:
        return found
    # no code line in the program's part, or too little code: what the model wrote decides
    whole = _judge(program.prefix, program.read, language, None)
    added = any(whole.metrics[k] != found.metrics.get(k) for k in ("foreign_lines", "junk_lines"))
    if not found.failed and not added:
        return found    # plain lines, then only prose: the answer, then talk about it (the stop rule's cut)
    whole.metrics["judged_on"] = "whole completion"
    return whole


_NAME = re.compile(r"[A-Za-z_]\w*")
_NAME_PART = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")    # `weightSum` -> weight, Sum; `MAX_LEN` -> MAX, LEN


def _named(lines: list[str]) -> bool:
    """The plain lines' names are made of words or code names (`total += values[i] * weights[i]`), or are
    too short to tell (`x = y + 1`); not the letter soup of a model that has not learned words yet (`dasern =`,
    `elnexthex`, `.odik__s(`): more than half of their parts of >= 3 letters are known."""
    names = code_names()
    known = []
    for name in (name for line in lines for name in _NAME.findall(line)):
        if name.strip("_").lower() in names:
            known.append(True)      # a real code name (`_makecodes`, `__add__`: the list holds them stripped)
        else:   # its parts; not an all-capital one (`_SIGHUP`, `MAX_LEN`: constants and acronyms)
            known += [p.lower() in names or is_english(p) for p in _NAME_PART.findall(name)
                      if len(p) >= 3 and not p.isupper()]
    return not known or 2 * sum(known) > len(known)


def _unfinished_line(prefix: str) -> str:
    """The prefix's last line when the completion goes on writing it: it has no newline after it and ends
    no block or statement (the SQL probes' `SELECT`; not `def square(x):` or `int add(int a, int b) {`)."""
    lead = prefix.rsplit("\n", 1)[-1]
    return "" if not lead.strip() or re.search(r"[:{};(]\s*$", lead) else lead


def _completes(lead: str, masked: str, language: str) -> bool:
    """`lead` + `masked` shows a construct of the language that `lead` alone does not."""
    own = set(own_languages(language))
    masked_lead = mask(lead, language)
    return any(langs & own and pattern.search(masked_lead + masked) and not pattern.search(masked_lead)
               for pattern, langs in MARKERS)


def _judge(prefix: str, kept: str, language: str, cut: str | None) -> Finding:
    if not kept.strip():
        reason = f"nothing before the stop rule ({cut})" if cut else "empty completion"
        return Finding(True, {"code_lines": 0, "code_share": 0.0}, {"reason": reason})
    masked = mask(prefix + kept, language)[len(prefix):]
    if not masked.strip() and ends_open(prefix + kept, language):
        masked = kept   # all of it in a string or comment that never closes: read it as written
    counts = {"code": 0, "foreign": 0, "prose": 0, "plain": 0, "junk": 0, "neutral": 0}
    weight = dict.fromkeys(counts, 0)
    examples: dict[str, str] = {}
    lead, plain = _unfinished_line(prefix), []
    for i, (raw, m) in enumerate(zip(kept.splitlines(), masked.splitlines())):
        if not m.strip():
            continue    # blank, or a comment / string line
        kind = classify_line(raw, m, language)
        if i == 0 and lead and kind != "code" and _completes(lead, m, language):
            kind = "code"   # `SELECT` + ` * FROM t`: the line the prefix began is a statement of the language
        if kind == "plain":
            plain.append(m)
        counts[kind] += 1
        weight[kind] += len("".join(raw.split()))
        examples.setdefault(kind, raw)
    marked = counts["code"] + counts["foreign"]
    if counts["code"]:
        own, attempt = counts["code"] / marked, True    # how the plain lines are shared out; junk is broken code
    else:   # no line of the probe's language: whose own words the completion uses decides
        n_own, n_other = _distinct_counts(kept, masked, language)
        attempt = n_own > n_other
        if marked:
            own = 0.0
        else:   # plain lines with no word of the language count only when their names are words (`_named`)
            names = set(_BARE_NAME.findall(masked))
            spoken = n_own or any(KEYWORDS[lang] & names for lang in own_languages(language)) or _named(plain)
            own = float(bool(spoken) and n_other <= n_own)
    unclear = weight["plain"] + (weight["junk"] if attempt else 0)   # junk next to code is broken code
    code = weight["code"] + own * unclear
    judged = weight["code"] + weight["plain"] + weight["foreign"] + weight["prose"] + weight["junk"]
    share = code / judged if judged else 0.0
    metrics = {"code_lines": counts["code"], "plain_lines": counts["plain"], "prose_lines": counts["prose"],
               "foreign_lines": counts["foreign"], "junk_lines": counts["junk"], "code_share": round(share, 3)}
    if code and share >= CODE_SHARE:
        return Finding(False, metrics)
    if not judged:
        reason = "only comments and closing brackets"
    elif not code:
        reason = f"no line is {language} code"
    else:
        reason = f"{share:.0%} of the completion's code and prose is {language} code"
    evidence = {"reason": reason}
    for kind in ("prose", "foreign", "junk"):
        if kind in examples:
            evidence[f"{kind}_example"] = clip(examples[kind], 160)
    return Finding(True, metrics, evidence)
