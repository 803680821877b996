"""The layout's rules, checked on the source (ARCHITECTURE.md states them):

* imports run downward only: the contracts in pyproject.toml's [tool.importlinter], run with `lint-imports`;
* an import inside a function is allowed only for an optional or heavy dependency, and says which on the
  same line with a `# deferred:` comment (anything else is a hidden cycle or a habit);
* every module opens with a docstring, and no module passes ~400 lines.

    python -m pytest tests/test_layout.py
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gptlab"
MAX_LINES = 420
SOURCES = sorted(p for p in PACKAGE.rglob("*.py"))


def _function_imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = path.read_text(encoding="utf-8").splitlines()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield node.lineno, lines[node.end_lineno - 1]


def test_imports_inside_functions_say_why_they_are_deferred():
    bare = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in SOURCES for n, line in _function_imports(p)
            if "# deferred:" not in line]
    assert not bare, "imports inside functions without a `# deferred: <dependency, why>` comment:\n" + "\n".join(bare)


def test_every_module_says_what_it_is_for_and_stays_small():
    missing = [str(p.relative_to(ROOT)) for p in SOURCES
               if p.stat().st_size and ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) is None]
    assert not missing, f"modules without a docstring: {missing}"
    big = {str(p.relative_to(ROOT)): n for p in SOURCES if (n := len(p.read_text(encoding="utf-8").splitlines())) >
           MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by what they compute): {big}"


def test_imports_run_downward_only():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "import-linter is not installed: pip install -e '.[dev]'"
    res = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
