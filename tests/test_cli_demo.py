"""The two things every user touches first: `--help` everywhere, and `gptlab demo` end to end."""

import json

import pytest

from conftest import run_gptlab
from gptlab.cli import COMMANDS, main


def test_every_command_has_help(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0, name
        assert "usage: gptlab " + name in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "gptlab demo" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_trains_evaluates_and_reports(tmp_path):
    out = tmp_path / "demo"
    r = run_gptlab("demo", "--out", out, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    html = out / "report" / "index.html"
    assert f"report: {html.resolve()}" in r.stdout
    assert (out / "report" / "report.md").is_file()
    steps = sorted((out / "run" / "checkpoints").iterdir())
    assert len(steps) >= 4
    vals = [json.loads((d / "meta.json").read_text())["val_bpb"] for d in steps]
    assert vals[-1] < vals[0]
    page = html.read_text()
    for section in ("Training curve", "Convergence", "Diagnosis", "What would help"):
        assert section in page
    again = run_gptlab("demo", "--out", out, timeout=900)
    assert again.returncode == 0 and "reusing" in again.stderr and "cache hit" in again.stderr + again.stdout
