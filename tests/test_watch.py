"""`gptlab watch`: new checkpoints are evaluated once each, the report follows, Ctrl-C stops cleanly."""

import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
from report_fixtures import add_run

from gptlab.commands import watch as watch_mod
from gptlab.errors import GptlabError
from gptlab.store import Store


def _ref(step):
    return SimpleNamespace(path=f"/runs/d12/checkpoints/step_{step:06d}", label=f"d12@{step}")


def test_each_new_checkpoint_is_evaluated_once_and_the_report_refreshed(tmp_path, monkeypatch):
    run_dir = tmp_path / "d12"
    run_dir.mkdir()
    db = str(tmp_path / "results.sqlite")
    landed = [[], [_ref(5000)], [_ref(5000)], [_ref(5000), _ref(10000)]]   # what each poll finds
    monkeypatch.setattr(watch_mod, "_complete_checkpoints", lambda _: landed.pop(0))
    calls = []

    def fake_evaluate(paths, *, db):
        calls.append(paths)
        store = Store(db)
        add_run(store, steps=[5000 * (i + 1) for i in range(len(calls))], samples=False)
        store.close()

    lines = []
    status = watch_mod.watch(run_dir, db=db, interval=0.01, evaluate=fake_evaluate, sleep=lambda _: None,
                             max_polls=4, echo=lines.append)
    assert status == 0
    assert calls == [["/runs/d12/checkpoints/step_005000"], ["/runs/d12/checkpoints/step_010000"]]
    md = (run_dir / "report" / "report.md").read_text()
    assert "| 10,000 |" in md                                        # refreshed after the second checkpoint
    assert sum("report refreshed" in ln for ln in lines) == 2


def test_ctrl_c_while_waiting_stops_with_status_0(tmp_path, monkeypatch):
    monkeypatch.setattr(watch_mod, "_complete_checkpoints", lambda _: [])

    def interrupted(_):
        raise KeyboardInterrupt
    lines = []
    assert watch_mod.watch(tmp_path, db=str(tmp_path / "r.sqlite"), sleep=interrupted, echo=lines.append) == 0
    assert lines[-1].startswith("stopped watching")


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(GptlabError, match="not a folder"):
        watch_mod.watch(tmp_path / "missing", db="x.sqlite")
    with pytest.raises(GptlabError, match="positive"):
        watch_mod.watch(tmp_path, db="x.sqlite", interval=0)


def test_sigint_to_the_command_exits_0(tmp_path):
    run_dir = tmp_path / "empty_run"
    run_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "gptlab", "watch", str(run_dir), "--db",
                             str(tmp_path / "r.sqlite"), "--interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    first = proc.stdout.readline()
    assert first.startswith("watching")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    assert "stopped watching" in out and "Traceback" not in err


@pytest.mark.parametrize("interval", [float("nan"), float("inf"), -1.0, 0.0, 1e300, "10", True])
def test_bad_intervals_are_refused_before_any_evaluation(tmp_path, interval):
    """--interval nan used to pass the check, evaluate everything, then fail in sleep()."""
    calls = []
    with pytest.raises(GptlabError, match="--interval") as e:
        watch_mod.watch(tmp_path, db=str(tmp_path / "r.sqlite"), interval=interval,
                        evaluate=lambda paths, db: calls.append(paths), sleep=lambda _: None, max_polls=2)
    assert "\n" not in str(e.value) and calls == [] and not (tmp_path / "r.sqlite").exists()


def test_a_deleted_run_directory_stops_the_watch_with_an_error(tmp_path, monkeypatch):
    """It used to poll the missing folder forever."""
    run_dir = tmp_path / "d12"
    run_dir.mkdir()
    monkeypatch.setattr(watch_mod, "_complete_checkpoints", lambda _: [])
    sleeps = []

    def sleep(_):
        sleeps.append(1)
        if len(sleeps) == 1:
            run_dir.rmdir()                     # deleted while the watch waits
        assert len(sleeps) < 5, "still polling a deleted run directory"
    with pytest.raises(GptlabError, match="run directory .* is gone") as e:
        watch_mod.watch(run_dir, db=str(tmp_path / "r.sqlite"), interval=0.01, sleep=sleep, echo=lambda _: None)
    assert "\n" not in str(e.value) and len(sleeps) == 1


def test_the_command_exits_2_in_one_line(tmp_path):
    """`gptlab watch` on a run directory that is deleted, and with --interval nan: one line, exit status 2."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    r = subprocess.run([sys.executable, "-m", "gptlab", "watch", str(run_dir), "--db", str(tmp_path / "r.sqlite"),
                        "--interval", "nan"], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and r.stderr.startswith("gptlab: error: --interval nan") and \
        r.stderr.count("\n") == 1, r.stderr
    proc = subprocess.Popen([sys.executable, "-m", "gptlab", "watch", str(run_dir), "--db",
                             str(tmp_path / "r.sqlite"), "--interval", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.stdout.readline().startswith("watching")
    run_dir.rmdir()
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2 and err.startswith("gptlab: error:") and err.count("\n") == 1, err
    assert "gone" in err and "Traceback" not in err
