"""The program a code sample is judged on: code_prefix + completion, cut by the stop rule.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_program.py

A 124M model does not stop where a function ends: it writes another function, a usage example, prose,
a markdown fence. The stop rule takes what a harness would run, and is the same for every sample:

1. Cut at the first end-of-text marker (<|endoftext|>, <|end|>, </s>, <|im_end|>, <|eot_id|>).
2. Markdown fences: an opening ``` line at the start of the completion is dropped; the next ``` line ends
   the program.
3. When the code_prefix leaves a block open (a Python def/class body; a `{` not yet closed), the model is
   completing that block. Once it has closed it (Python: a non-blank line at column 0; brace languages:
   depth back to 0), the program ends at the first top-level line that neither starts a definition (def,
   class, decorator, import / func, type, var, const / class, interface, annotation / function, class,
   const, let, var, export, import) nor closes one. So helper functions stay, while a usage example,
   `if __name__ == "__main__":`, or prose after the code are cut.
4. SQL: the program ends after the first statement: its `;`, or else the first blank line.
5. When the completion ran to its end (no cut above) inside a later top-level definition that does not
   parse, that last definition is dropped (`program_dropped_tail`): the sampler's token limit ended it,
   and a half-written helper after a complete answer is not a syntax error of the answer. The
   definition the probe asked for is never dropped.

Strings and comments never count (languages.mask). Without a code_prefix the program is the completion.
`Program.read` keeps the completion after rules 1 and 2 only, all that a reader reads: no_code falls back on
it when the program's part shows no code of the probe's language (no_code.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gptlab.diagnose.languages import LANGS, brace_depth, mask

EOT_RE = re.compile(r"<\|endoftext\|>|<\|end\|>|</s>|<\|im_end\|>|<\|eot_id\|>")
FENCE_RE = re.compile(r"^[ \t]*```", re.MULTILINE)


@dataclass
class Program:
    prefix: str
    kept: str                      # the completion's part that is in the program
    read: str                      # the completion after rules 1-2 only, all that a reader reads
    cut: str | None = None         # why the completion was cut, for evidence
    cut_offset: int | None = None  # where, in the completion
    later_definitions: list[int] = field(default_factory=list)   # offsets in `kept` (rule 5)
    dropped_tail: bool = False

    @property
    def text(self) -> str:
        return self.prefix + self.kept

    def without_tail(self) -> "Program":
        """Rule 5: the same program without its last later definition."""
        at = self.later_definitions[-1]
        return Program(self.prefix, self.kept[:at], self.read, self.cut, self.cut_offset,
                       self.later_definitions[:-1], dropped_tail=True)

    def metrics(self) -> dict:
        m = {"program_chars": len(self.text), "program_cut": self.cut}
        if self.dropped_tail:
            m["program_dropped_tail"] = True
        return m


def build_program(code_prefix: str | None, completion: str, language: str) -> Program:
    prefix = code_prefix or ""
    text, cut, at = completion, None, None
    m = EOT_RE.search(text)
    if m:
        text, cut, at = text[:m.start()], "end-of-text marker", m.start()
    skip = 0
    first = re.match(r"\s*```[^\n]*\n", text)
    if first:
        skip = first.end()
    m = FENCE_RE.search(text, skip)
    if m:
        text, cut, at = text[:m.start()], "markdown fence", m.start()
    body = text[skip:]
    if language == "sql":
        end, why = _first_statement_end(prefix, body)
    elif language in LANGS:
        end, why, later = _top_level_end(prefix, body, LANGS[language])
        if end is None:
            return Program(prefix, body, body, cut, at, later)
    else:
        return Program(prefix, body, body, cut, at)
    if end is None:
        return Program(prefix, body, body, cut, at)
    return Program(prefix, body[:end], body, why, skip + end, later if language != "sql" else [])


def _lines(text: str):
    start = 0
    for line in text.splitlines(keepends=True):
        yield start, line
        start += len(line)


def _top_level_end(prefix: str, body: str, lang) -> tuple[int | None, str | None, list[int]]:
    """Rule 3: (cut offset in body or None, reason, offsets of later definitions)."""
    masked = mask(prefix + body, lang.name)
    mp, mb = masked[:len(prefix)], masked[len(prefix):]
    if lang.braces:
        depth = brace_depth(mp)
        if depth <= 0:
            return None, None, []
    else:
        # raw, not masked: a docstring line is blank once masked, yet it means the body has started
        last = next((ln for ln in reversed(prefix.splitlines()) if ln.strip()), "")
        if not _indented(last):
            if not last.rstrip().endswith(":"):
                return None, None, []
            # a bare header: a body written at column 0 is the model's (mis-indented) body, not the end
            first = next((ln for ln in mb.splitlines() if ln.strip()), "")
            if not _indented(first):
                return None, None, []
        depth = 1
    later = []
    started_mid_line = bool(prefix) and not prefix.endswith("\n")
    for offset, line in _lines(mb):
        if started_mid_line:
            started_mid_line = False
            if lang.braces:
                depth += brace_depth(line)
            continue
        stripped = line.strip()
        if lang.braces:
            at_top = depth <= 0
            if at_top and stripped:
                if not lang.declaration.match(stripped):
                    return offset, f"top-level line {_show(body, offset)}", later
                if not stripped.startswith(("}", ")", "]")):
                    later.append(offset)
            depth += brace_depth(line)
        elif stripped and not _indented(line):
            depth = 0
            if not lang.declaration.match(stripped):
                return offset, f"top-level line {_show(body, offset)}", later
            if not stripped.startswith((")", "]", "}")):
                later.append(offset)
    return None, None, later


def _indented(line: str) -> bool:
    return line[:1] in (" ", "\t")


def _show(body: str, offset: int) -> str:
    line = body[offset:].split("\n", 1)[0].strip()
    return repr(line if len(line) <= 60 else line[:59] + "…")


def _first_statement_end(prefix: str, body: str) -> tuple[int | None, str | None]:
    """Rule 4: just past the first `;` of the completion, else its first blank line after some SQL."""
    masked = mask(prefix + body, "sql")[len(prefix):]
    semi = masked.find(";")
    blank = next((m.start() for m in re.finditer(r"\n[ \t]*\n", masked)
                  if (prefix + masked[:m.start()]).strip()), None)
    if semi >= 0 and (blank is None or semi < blank):
        return semi + 1, "end of the first statement"
    if blank is not None:
        return blank, "blank line after the statement"
    return None, None
