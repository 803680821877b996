"""Build gptlab/diagnose/code_names.txt: Python's own lower-case names, which invented_words never counts as coined.

    python tools/code_names.py [--out gptlab/diagnose/code_names.txt]

The names are read, never imported, from the source of the standard library of the Python that runs this
(its test suites, IDLE, lib2to3, tkinter and turtledemo left out): every function, class, parameter,
attribute, variable and module name, plus the keywords, the builtins and the methods of the builtin types.
A name is kept when, without its leading and trailing underscores, it is >= 3 lower-case ASCII letters
("__getitem__" is "getitem"; "tzoff", "getcontext", "isinstance"). One name per line, sorted. Deterministic
for a given Python; rerun after changing the Python the list was made with (it says which in its first line).
"""

from __future__ import annotations

import argparse
import ast
import builtins
import keyword
import os
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = {"test", "tests", "idlelib", "lib2to3", "tkinter", "turtledemo", "ensurepip", "site-packages",
           "__pycache__"}
BUILTIN_TYPES = (str, bytes, bytearray, list, tuple, dict, set, frozenset, int, float, complex, object, type,
                 BaseException, range, slice, memoryview)


def source_names(lib: Path) -> set[str]:
    """Every name the standard library's source defines or uses."""
    names: set[str] = set()
    for root, dirs, files in os.walk(lib):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            try:
                tree = ast.parse(Path(root, name).read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(node.name)
                elif isinstance(node, ast.arg):
                    names.add(node.arg)
                elif isinstance(node, ast.Attribute):
                    names.add(node.attr)
                elif isinstance(node, ast.Name):
                    names.add(node.id)
                elif isinstance(node, ast.alias):
                    names.update(node.name.split("."))
    return names


def code_names() -> list[str]:
    names = source_names(Path(sysconfig.get_paths()["stdlib"]))
    names |= set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins)) | set(sys.stdlib_module_names)
    for t in BUILTIN_TYPES:
        names |= set(dir(t))
    kept = {n.strip("_") for n in names}
    return sorted(n for n in kept if len(n) >= 3 and n.isascii() and n.isalpha() and n.islower())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "gptlab" / "diagnose" / "code_names.txt")
    args = ap.parse_args()
    names = code_names()
    version = ".".join(map(str, sys.version_info[:3]))
    args.out.write_text(f"# Python {version}'s own names, from tools/code_names.py\n" + "\n".join(names) + "\n",
                        encoding="utf-8")
    print(f"{len(names)} names -> {args.out}")


if __name__ == "__main__":
    main()
