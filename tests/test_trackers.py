"""Experiment trackers (gptlab/trackers.py, gptlab/commands/tracking.py), read back with the trackers' own formats.

W&B runs offline (WANDB_MODE=offline): its run file (run-<id>.wandb, a log of protobuf records) is read back with
W&B's own `wandb_internal_pb2.Record`; TensorBoard event files with tensorboard's EventAccumulator. Nothing
reaches the network.
"""

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY, TWO_PROBES
from gptlab.checkpoints.gptlab_run import read_metrics
from gptlab.cli import main
from gptlab.commands.watch import watch
from gptlab.config import load_config
from gptlab.errors import GptlabError
from gptlab.evaluate.job import evaluate
from gptlab.store import Store
from gptlab.trackers import TrackerSpec, markdown_table, parse_log, train_metrics
from gptlab.train import train

wandb_pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
BLOCK = 32768       # the run file is a LevelDB-style log: 32 KiB blocks, records of 7-byte header + data


def wandb_records(run_file: Path):
    """(kind, record) of every record in a W&B run file."""
    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:                 # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):                          # FULL, or LAST of a split record
            record = wandb_pb.Record()
            record.ParseFromString(pending + chunk)
            pending = b""
            yield record.WhichOneof("record_type"), record
        elif kind in (2, 3):                        # FIRST, MIDDLE
            pending += chunk


def wandb_run(folder: Path) -> dict:
    """The one offline run under `folder`/wandb: its name, group, job type, config, and history by step."""
    runs = sorted((folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    out = {"dir": runs[0], "history": {}}
    for kind, r in wandb_records(next(runs[0].glob("run-*.wandb"))):
        if kind == "run":
            out.update(name=r.run.display_name, group=r.run.run_group, job=r.run.job_type, project=r.run.project,
                       config={u.key: json.loads(u.value_json) for u in r.run.config.update})
        elif kind == "history":
            row = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
            out["history"].setdefault(row["_step"], {}).update(row)
    return out


def tb_scalars(folder: Path) -> dict[str, dict[int, float]]:
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def tb_texts(folder: Path) -> dict[str, dict[int, str]]:
    from tensorboard.util import tensor_util
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    return {tag: {e.step: tensor_util.make_ndarray(e.tensor_proto).item().decode() for e in acc.Tensors(tag)}
            for tag in acc.Tags()["tensors"]}


@pytest.fixture
def offline_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def test_the_log_flag_names_known_trackers_only(capsys, tmp_path):
    assert parse_log("wandb, tensorboard:tb,wandb:proj") == [TrackerSpec("wandb"), TrackerSpec("tensorboard", "tb"),
                                                             TrackerSpec("wandb", "proj")]
    assert parse_log("") == [] and parse_log(None) == []
    with pytest.raises(GptlabError, match="unknown tracker 'mlflow'"):
        parse_log("wandb,mlflow")
    assert main(["eval", str(tmp_path / "nothing-here"), "--log", "mlflow"]) == 2   # checked before any path
    err = capsys.readouterr().err
    assert "unknown tracker 'mlflow'" in err and err.count("\n") == 1


def test_a_missing_tracker_package_is_one_line(monkeypatch, tmp_path):
    from gptlab.trackers import open_trackers
    monkeypatch.setitem(sys.modules, "wandb", None)                 # as if not installed
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    for spec, words in ((TrackerSpec("wandb"), "pip install 'gptlab[wandb]'"),
                        (TrackerSpec("tensorboard", str(tmp_path)), "pip install 'gptlab[tensorboard]'")):
        with pytest.raises(GptlabError, match=words.replace("[", r"\[")):
            open_trackers([spec], name="x", job="eval")


def test_training_metrics_have_stable_names():
    row = {"step": 4, "train_loss": 3.5, "lr_mult": 1.0, "lr": 0.02, "tokens_seen": 2048, "tokens_per_s": 9e3,
           "dt": 0.2, "mfu": 0.31, "val_bpb": 2.5, "val_bpb_domains": {"code": 2.0, "web": 3.0, "bad": float("nan")}}
    assert train_metrics(row) == {"train/loss": 3.5, "train/lr_mult": 1.0, "train/lr": 0.02,
                                  "train/tokens_seen": 2048, "train/tokens_per_s": 9e3, "train/step_seconds": 0.2,
                                  "train/mfu": 0.31, "val/bpb": 2.5, "val/bpb/code": 2.0, "val/bpb/web": 3.0}
    assert markdown_table(["a", "b"], [["x|y", "1\n2"]]) == "| a | b |\n|---|---|\n| x\\|y | 1\\n2 |"


def test_training_logs_every_metrics_line_to_wandb_and_tensorboard(offline_wandb, tmp_path):
    cfg = load_config(TINY, ["logging.wandb_project=gptlab-test", f"logging.tensorboard_dir={tmp_path / 'tb'}"])
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 9))

    got = wandb_run(run)                                   # the run's W&B files live in the run directory
    assert (got["name"], got["group"], got["job"], got["project"]) == ("tiny train", "tiny", "train", "gptlab-test")
    assert got["config"]["model"]["depth"] == 1 and got["config"]["tokens_per_step"] == 512
    assert sorted(got["history"]) == list(range(1, 9))
    for r in rows:
        h = got["history"][r["step"]]
        assert h["train/loss"] == r["train_loss"] and h["train/lr"] == r["lr"]
        assert h["train/tokens_seen"] == r["tokens_seen"] and h["train/tokens_per_s"] == r["tokens_per_s"]
        assert "train/mfu" not in h                        # MFU only on CUDA
        for domain, bpb in (r.get("val_bpb_domains") or {}).items():
            assert h[f"val/bpb/{domain}"] == bpb
    assert {s for s, h in got["history"].items() if "val/bpb" in h} == {4, 8}

    scalars = tb_scalars(tmp_path / "tb" / "tiny" / "train")
    assert sorted(scalars["train/loss"]) == list(range(1, 9))
    for r in rows:
        assert scalars["train/loss"][r["step"]] == pytest.approx(r["train_loss"], rel=1e-6)
    assert sorted(scalars["val/bpb/code_python"]) == [4, 8]
    assert scalars["val/bpb/web_en"][8] == pytest.approx(rows[-1]["val_bpb_domains"]["web_en"], rel=1e-6)


def test_with_logging_off_nothing_is_imported_or_written(tmp_path):
    """A training without [logging], in a fresh interpreter: no tracker package is imported, no files."""
    code = ("import sys; from gptlab.config import load_config; from gptlab.train import train; "
            f"train(load_config({str(TINY)!r}, ['train.steps=2', 'train.save_every=2', "
            f"'tokenizer.train_chars=50000']), {str(tmp_path / 'run')!r}, progress=False); "
            "print(sorted(m for m in ('wandb', 'tensorboard', 'torch.utils.tensorboard') if m in sys.modules))")
    got = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout.strip().splitlines()[-1] == "[]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert not (tmp_path / "run" / "wandb").exists()


def test_eval_logs_bpb_failure_rates_and_the_samples_table(offline_wandb, tiny_run, tmp_path):
    suite = tmp_path / "two.toml"
    suite.write_text(f'name = "two"\nversion = "1"\n\n{TWO_PROBES}')
    db = tmp_path / "r.sqlite"
    assert main(["eval", str(tiny_run), "--db", str(db), "--suite", str(suite), "--samples", "2",
                 "--max-tokens", "6", "--no-exec", "--threads", "1", "--log", "wandb:evals,tensorboard:tb"]) == 0
    store = Store(db, readonly=True)
    try:
        n_samples = {m["step"]: len(store.query("SELECT id FROM samples WHERE weights_hash = ?",
                                                (m["weights_hash"],))) for m in store.models()}
    finally:
        store.close()
    got = wandb_run(tmp_path)
    assert (got["name"], got["group"], got["job"], got["project"]) == ("run eval", "run", "eval", "evals")
    assert sorted(got["history"]) == [4, 8]
    for step in (4, 8):
        h = got["history"][step]
        assert h["eval/bpb/code_python"] > 0 and h["eval/bpb/web_en"] > 0
        assert 0 <= h["eval/t0.8/code/clean_rate"] <= 1 and "eval/t0.8/general/rate_prompt_echo" in h
        table = json.loads((got["dir"] / "files" / h["eval/samples/path"]).read_text())
        assert table["columns"][:3] == ["step", "probe", "domain"] and len(table["data"]) == n_samples[step] == 4
        assert {r[0] for r in table["data"]} == {step}
    scalars = tb_scalars(tmp_path / "tb" / "run" / "eval")
    assert scalars["eval/bpb/web_en"][8] == pytest.approx(got["history"][8]["eval/bpb/web_en"], rel=1e-6)
    texts = tb_texts(tmp_path / "tb" / "run" / "eval")
    page = texts["eval/samples/text_summary"][4]
    assert page.startswith("| step | probe | domain |") and page.count("\n| 4 | ") == 4


def test_watch_logs_each_new_checkpoint_into_one_run(offline_wandb, tiny_run, tmp_path):
    bpb = {"web": str(Path(__file__).parent / "fixtures" / "peers" / "text" / "val.txt")}

    def bpb_only(paths, *, db):
        evaluate(paths, db=db, probes=False, bpb_files=bpb, progress=False, threads=1)

    assert watch(tiny_run, db=str(tmp_path / "w.sqlite"), out=tmp_path / "report", evaluate=bpb_only,
                 max_polls=1, echo=lambda m: None, log="tensorboard:tb,wandb") == 0
    got = wandb_run(tmp_path)
    assert got["project"] == "gptlab" and sorted(got["history"]) == [4, 8]
    assert all(h["eval/bpb/web"] > 0 for h in got["history"].values())
    assert sorted(tb_scalars(tmp_path / "tb" / "run" / "eval")["eval/bpb/web"]) == [4, 8]
