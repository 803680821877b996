"""Shared fixtures: a tiny config, and one tiny trained run reused by the tests that only read it."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "configs" / "tiny.toml"

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")       # a name taken for a Hub id never reaches the network


def older_store(db, version: int, *tables: str) -> None:
    """A store at `db` as gptlab with schema `version` left it: written now, then `tables` dropped and the
    version set back (a writer must add them again, a reader must cope without them)."""
    from gptlab.store import Store
    Store(db).close()
    c = sqlite3.connect(db)
    for t in tables:
        c.execute(f"DROP TABLE {t}")
    c.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
    c.commit()
    c.close()


def run_gptlab(*args, cwd=None, env=None, timeout=600):
    """`python -m gptlab ARGS` in a subprocess, as a user would run it."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "gptlab", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_config():
    return TINY


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A trained tiny run directory (8 steps, checkpoints at 4 and 8)."""
    from gptlab.config import load_config
    from gptlab.train import train
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    train(load_config(TINY), out, progress=False)
    return out


# Two probes (a code probe with a test, a prose probe): the small suite the eval tests sample.
TWO_PROBES = '''[[probes]]
name = "square"
domain = "code"
language = "python"
prompt = "def square(x):"
code_prefix = "def square(x):"
tests = "assert square(3) == 9"

[[probes]]
name = "water"
domain = "general"
prompt = "Water is a molecule made of"
'''
