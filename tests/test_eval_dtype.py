"""bfloat16 weights for evaluation (the default on CUDA): bits per byte within 1e-3 of float32, measured with
CPU bfloat16 on small trained models of each family gptlab runs itself, and through `gptlab eval --dtype`.

Gaps measured (bf16 - fp32 bpb on the peers' 4 held-out stdlib files): nanochat d2 -4.4e-5, nanoGPT char
-1.7e-4, gptlab tiny (8 steps, val.txt) -2.1e-5; outside the test, llm.c GPT-2 tiny -2.4e-5 and transformers
GPT-2 trained 200 steps -1.9e-4. The test prints each gap (pytest -s) and fails above 1e-3."""

import json
import sqlite3
from pathlib import Path

import pytest
import torch
from conftest import run_gptlab

from gptlab.checkpoints import discover, load
from gptlab.evaluate.bpb import score_documents
from gptlab.evaluate.job import evaluate

PEERS = Path(__file__).parent / "fixtures" / "peers"
VAL = (PEERS / "text" / "val.txt").read_text()
DOCS = [VAL[f["start"]:f["end"]] for f in json.loads((PEERS / "text" / "manifest.json").read_text())["val"]]
GAP = 1e-3                  # the promise: bf16 evaluation moves bpb by less than this


@pytest.mark.parametrize("where", ["nanochat/base_dir/base_checkpoints/d2", "nanogpt/out-pystdlib-char"])
def test_bfloat16_bpb_is_within_1e3_of_float32(where):
    ref = discover(PEERS / where)[0]
    fp32 = load(ref)
    assert next(fp32.model.parameters()).dtype == torch.float32
    want = score_documents(fp32.model, fp32.tokenizer, DOCS).bpb
    bf16 = load(ref)
    got = score_documents(bf16.model, bf16.tokenizer, DOCS, dtype=torch.bfloat16).bpb
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    print(f"{where}: fp32 {want:.6f}, bf16 {got:.6f}, gap {got - want:+.2e}")
    assert got != want and abs(got - want) < GAP           # really computed in bf16, and close


def test_gptlab_model_through_eval_dtype(tiny_run, tmp_path):
    """gptlab's own family through the job: --dtype bfloat16 stores bpb within 1e-3 of --dtype float32."""
    rows = {}
    for dtype in ("float32", "bfloat16"):
        db = tmp_path / f"{dtype}.sqlite"
        evaluate([str(tiny_run / "checkpoints" / "step_000008")], db=str(db), probes=False, progress=False,
                 bpb_files={"val": str(PEERS / "text" / "val.txt")}, device="cpu", dtype=dtype, echo=lambda m: None)
        with sqlite3.connect(db) as con:
            rows[dtype] = con.execute("SELECT bpb FROM bpb").fetchone()[0]
    print(f"gptlab tiny: fp32 {rows['float32']:.6f}, bf16 {rows['bfloat16']:.6f}")
    assert rows["float32"] != rows["bfloat16"] and abs(rows["float32"] - rows["bfloat16"]) < GAP


def test_bad_dtype_is_one_line(tiny_run, tmp_path):
    r = run_gptlab("eval", tiny_run, "--db", tmp_path / "x.sqlite", "--dtype", "half", "--no-probes")
    assert r.returncode == 2 and r.stderr.strip() == "gptlab: error: --dtype half: expected one of auto, float32, " \
        "bfloat16" and not (tmp_path / "x.sqlite").exists()
