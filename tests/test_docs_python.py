"""docs/python.md stays true: its ```python blocks run in order, in one namespace, in a temp folder.

    python -m pytest tests/test_docs_python.py
"""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "python.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_every_python_block_runs_in_order(tmp_path, monkeypatch):
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 6
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "fixtures").symlink_to(ROOT / "tests" / "fixtures")   # the page's relative paths
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name} block {i}", "exec"), namespace)
    assert (tmp_path / "results.sqlite").is_file() and not os.path.islink(tmp_path / "results.sqlite")


def test_readme_links_it():
    assert "(docs/python.md)" in (ROOT / "README.md").read_text()
