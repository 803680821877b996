"""bench/gpu_acceptance.py --smoke: every row's code on CPU at tiny shapes, through the same child processes, table
and JSON as the GPU run, so the script cannot rot before a GPU is at hand. nanochat's side runs too when its
source is found (/work/shared/peers/src/nanochat, $GPTLAB_NANOCHAT_SRC or .peers/nanochat), with TorchDynamo off
(its optimizer is compiled with inductor, minutes of C++ on a CPU); elsewhere its row says it was skipped."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_acceptance.py"
sys.path.insert(0, str(ROOT / "bench"))

from acceptance.train_rows import find_nanochat

ROWS = ["train_gptlab", "train_nanochat", "bpb", "sampling", "full_eval"]


def acceptance(*args, timeout=900):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.slow
def test_smoke_runs_every_row_and_writes_the_table(tmp_path):
    out = tmp_path / "acceptance.json"
    r = acceptance("--smoke", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"] is True and list(report["rows"]) == ROWS
    for name, row in report["rows"].items():
        assert row["status"] == "ok" or row["status"].startswith("skipped: "), (name, row)
    rows = report["rows"]
    assert rows["train_gptlab"]["status"] == "ok" and rows["full_eval"]["status"] == "ok"
    assert rows["train_gptlab"]["tokens_per_s"] > 0 and rows["train_gptlab"]["mfu"] is None    # no MFU on a CPU
    if find_nanochat(None) is not None:
        nano = rows["train_nanochat"]
        assert nano["status"] == "ok" and nano["attention"].startswith("SDPA fallback") and nano["tokens_per_s"] > 0
        assert "TORCHDYNAMO_DISABLE" in nano["compiled"]
    else:
        assert rows["train_nanochat"]["status"].startswith("skipped: nanochat source not found")
    for name in ("bpb", "sampling"):
        if rows[name]["status"] == "ok":
            assert rows[name]["tokens_per_s"]["gptlab"] > 0 and rows[name]["ratio"] > 0
    if rows["bpb"]["status"] == "ok":
        assert rows["bpb"]["bpb_gap"] < 1e-4                        # the same windows and weights, float32
    if rows["sampling"]["status"] == "ok":
        assert rows["sampling"]["decode"] == "static" and not rows["sampling"]["notes"]
    ev = rows["full_eval"]
    assert ev["evaluated"] == ev["checkpoints"] == 2 and not ev["extrapolated"]
    assert ev["work"]["bpb_computed"] == 2 * 7 and ev["work"]["generations"] > 0 and ev["work"]["findings_computed"] > 0
    figures = [t["figure"] for t in report["table"]]
    assert len(figures) == 4 and all({"target", "met", "ratio"} <= set(t) for t in report["table"])
    assert "| figure | gptlab | peer |" in r.stdout and "MFU >= 45%" in r.stdout and "<= 60 s" in r.stdout


def test_rows_out_of_time_are_reported_not_run(tmp_path):
    out = tmp_path / "a.json"
    r = acceptance("--smoke", "--budget-s", "5", "--rows", "bpb,full_eval", "--out", out, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert all(v["status"].startswith("skipped: out of time") for v in rows.values()) and list(rows) == ["bpb", "full_eval"]


@pytest.mark.parametrize("args, words", [(["--rows", "nope"], "--rows nope"), (["--budget-s", "0"], "--budget-s"),
                                         (["--out", "/no/such/dir/x.json"], "no such folder")])
def test_bad_arguments_exit_2_without_a_traceback(args, words):
    r = acceptance("--smoke", *args, timeout=120)
    assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr
