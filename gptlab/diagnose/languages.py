"""What the code detectors know about each language: comments and strings, declarations, look.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_program.py tests/test_diagnose_code.py

`mask(text, language)` blanks out string literals, quotes included, and comments (same length, newlines
kept), so that
brace depth, "is this line at top level" and "does this line look like code" are read from code alone.
The lexer is deliberately small: a quote left open at the end of a line closes there (JSX text such as
`<p>Don't</p>` must not swallow the rest of the file); only the multi-line forms of each language
(Python triple quotes, Go raw strings, JS template literals, Java text blocks, C-style block comments,
SQL strings) span lines, and a one-character one (SQL's `'`, the backtick) only when it closes somewhere: a
stray quote in a model's junk must not blank the rest of the completion.

`MARKERS` are constructs that show which language a line is in (`:=` and `func` for Go, `def ...:` for
Python, `console.` or `=>` for JavaScript, a trailing `;` for the C family and SQL, ...): no_code uses them
to tell "code in the probe's language" from code in another one (a Go probe answered with
`os.environ['PORT']`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Lang:
    name: str
    line_comments: tuple[str, ...]
    block_comment: bool          # /* ... */
    multiline_quotes: tuple[str, ...]
    quotes: tuple[str, ...]      # single-line string/char delimiters
    braces: bool                 # blocks are {...} (else: indentation or statements)
    declaration: re.Pattern      # a top-level line that starts (or closes) a definition


_PY_DECL = re.compile(r"(async\s+def|def|class|import|from)\b|@|[)\]}]|#")
_GO_DECL = re.compile(r"(func|type|var|const|import|package)\b|[)}]|//|/\*")
_JAVA_DECL = re.compile(
    r"((public|private|protected|static|final|abstract|sealed|non-sealed|strictfp)\s+)*"
    r"(class|interface|enum|record|@interface)\b|@|import\b|package\b|[)}]|//|/\*")
_JS_DECL = re.compile(r"(export|import|function|async\s+function|class|const|let|var)\b|[)\]}]|//|/\*")

LANGS = {
    "python": Lang("python", ("#",), False, ('"""', "'''"), ('"', "'"), False, _PY_DECL),
    "go": Lang("go", ("//",), True, ("`",), ('"', "'"), True, _GO_DECL),
    "java": Lang("java", ("//",), True, ('"""',), ('"', "'"), True, _JAVA_DECL),
    "javascript": Lang("javascript", ("//",), True, ("`",), ('"', "'"), True, _JS_DECL),
    "jsx": Lang("jsx", ("//",), True, ("`",), ('"', "'"), True, _JS_DECL),
    "sql": Lang("sql", ("--",), True, ("'",), ('"',), False, re.compile(r"(?!)")),
}

_PY, _GO, _JAVA, _JS, _JSX, _SQL = "python", "go", "java", "javascript", "jsx", "sql"
_C_FAMILY = frozenset((_GO, _JAVA, _JS, _JSX))

# (construct, the languages it is evidence for). A line of a probe in language L is code in L when it
# shows a construct of L; it is foreign when it shows only constructs of other languages.
MARKERS = [(re.compile(p, flags), frozenset(langs)) for p, langs, flags in (
    (r"^\s*(async\s+)?def\s+\w+\s*\(|^\s*(elif|except)\b|^\s*class\s+\w+.*:\s*$", (_PY,), 0),
    (r"^\s*(if|for|while|with|try|else|finally)\b.*:\s*$", (_PY,), 0),
    (r"^\s*import\s+[\w.]+(\s+as\s+\w+)?\s*$|^\s*from\s+[\w.]+\s+import\b", (_PY,), 0),
    (r"\bself\.|\bos\.environ\[|\[::-?\d*\]|\bprint\(|[=(,]\s*(None|True|False)\b|\brange\(", (_PY,), 0),
    (r"\blen\(", (_PY, _GO), 0),
    (r"\bfunc\s+(\(\w+\s+\*?\w+\)\s*)?\w+\s*\(|\bfunc\s*\(|:=|\bfmt\.\w+\(|\berr\s*!=\s*nil\b|"
     r"[=(,]\s*nil\b|\bchan\s+\w|^\s*defer\s+\w|"
     r"\bgo\s+func\b|^\s*package\s+\w+\s*$|^\s*import\s*(\(|\")|\bos\.Getenv\(|\bsignal\.Notify\(",
     (_GO,), 0),
    (r"\b(public|private|protected)\s+[\w<>\[\],\s]*\w+\s*[({=;]|\bSystem\.\w+|@Override\b|"
     r"\b(int|long|double|boolean|char|void|String|float)(\[\])?\s+\w+\s*[=;,)(]|^\s*package\s+[\w.]+;|"
     r"^\s*import\s+(static\s+)?[\w.]+\*?;", (_JAVA,), 0),
    (r"\b(const|var)\s+[\w$]+\s*=", (_GO, _JS, _JSX), 0),     # `var x = f()` is Go as much as JavaScript
    (r"^\s*(const|var|type)\s*\(\s*$|^\s*(}\s*else\s+)?(if|for|switch)\s+[^\s(].*{\s*$", (_GO,), 0),
    (r"\blet\s+([\w$]+\s*=|[{\[])|\b(const|var)\s+[{\[]|=>|\bfunction\s*\*?\s*[\w$]*\s*\(|\bconsole\.\w+|===|!==|"
     r"\brequire\(|\bmodule\.exports\b|\b(document|window)\.\w|^\s*export\s+(default|const|function|class)\b|"
     r"^\s*import\b.*\bfrom\s+['\"]", (_JS, _JSX), 0),
    (r"<\/?[A-Z][\w.]*(\s|/?>|$)|<\/?(div|span|p|ul|li|button|h[1-6]|form|input)\b[^>]*>|\bclassName=|"
     r"\buse[A-Z]\w*\(", (_JSX,), 0),
    (r";\s*$", (_JAVA, _JS, _JSX, _SQL), 0),
    (r"[{]\s*$|^\s*[}]", tuple(_C_FAMILY), 0),
    (r"'[^'\n]{2,}'", (_PY, _JS, _JSX, _SQL), 0),
    (r"\bawait\s+[\w.]+\(|^\s*async\s+(def|function)\b", (_PY, _JS, _JSX), 0),
    (r"\bnew\s+[A-Z]\w*\s*[(<\[]|\bthis\.\w", (_JAVA, _JS, _JSX), 0),
    (r"[=(,]\s*null\b|\bnull\s*[;),]", (_JAVA, _JS, _JSX, _SQL), 0),
    (r"\bselect\b.+\bfrom\s+\w|\b(sum|count|avg|min|max)\s*\(\s*(\*|distinct\b|[\w.]+\s*\))|\blimit\s+\d+\s*;?\s*$",
     (_SQL,), re.IGNORECASE),
    (r"^\s*(SELECT|FROM|WHERE|JOIN|LEFT JOIN|INNER JOIN|GROUP BY|ORDER BY|HAVING|UNION)\b", (_SQL,), 0),
    (r"^\s*(create|drop|alter)\s+(or\s+replace\s+)?(temp\w*\s+)?(table|view|index|function|type|schema|"
     r"trigger|aggregate|sequence)\b|^\s*insert\s+into\b|^\s*update\s+\w+\s+set\b|^\s*delete\s+from\b",
     (_SQL,), re.IGNORECASE),
    (r"^\s*(from|join)\s+\w+(\s+(as\s+)?\w+)?\s*;?\s*$|^\s*(group|order)\s+by\s+[\w.]+(\s*,\s*[\w.]+)*"
     r"(\s+(desc|asc))?\s*;?\s*$|^\s*where\s+[\w.]+\s*(=|<|>|!=|like\b|in\b|is\b)", (_SQL,), 0),
)]
# Code in a compatible language counts as the probe's own (JSX is JavaScript with markup).
COMPATIBLE = {_JSX: (_JSX, _JS), _JS: (_JS, _JSX)}


def own_languages(language: str) -> tuple[str, ...]:
    return COMPATIBLE.get(language, (language,))


def mask(text: str, language: str) -> str:
    """`text` with strings (and their quotes) and comments replaced by spaces (newlines kept)."""
    lang = LANGS[language]
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if any(text.startswith(p, i) for p in lang.line_comments):
            j = text.find("\n", i)
            j = n if j < 0 else j
            _blank(out, i, j)
            i = j
        elif lang.block_comment and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            _blank(out, i, j)
            i = j
        elif (q := next((q for q in lang.multiline_quotes if text.startswith(q, i)), None)) is not None:
            j = _string_end(text, i + len(q), q, multiline=True)
            if j == n and len(q) == 1 and not text.endswith(q):
                j = _string_end(text, i + 1, q, multiline=False)   # a stray ' or ` that never closes
            _blank(out, i, j)
            i = j
        elif c in lang.quotes:
            j = _string_end(text, i + 1, c, multiline=False)
            _blank(out, i, j)
            i = j
        else:
            i += 1
    return "".join(out)


def _string_end(text: str, i: int, quote: str, multiline: bool) -> int:
    """Index just past the closing `quote`, honouring backslash escapes (SQL doubles its quotes instead,
    which reads the same: '' closes and reopens)."""
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\" and quote != "`":
            i += 2
            continue
        if c == "\n" and not multiline:
            return i
        if text.startswith(quote, i):
            return i + len(quote)
        i += 1
    return n


def _blank(out: list[str], start: int, end: int):
    for k in range(start, min(end, len(out))):
        if out[k] != "\n":
            out[k] = " "


def brace_depth(masked: str) -> int:
    return masked.count("{") - masked.count("}")
