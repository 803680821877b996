"""`gptlab models PATH [--json]`: the table (or JSON lines) of every checkpoint found, through gptlab.cli.main."""

import json
import shutil
from pathlib import Path

from gptlab.cli import main

PEERS = Path(__file__).parent / "fixtures" / "peers"


def _rows(out):
    return {line.split("│")[0].strip(): [c.strip() for c in line.split("│")[1:]]
            for line in out.splitlines() if "│" in line}


def test_lists_every_peer_checkpoint(capsys):
    assert main(["models", str(PEERS)]) == 0
    rows = _rows(capsys.readouterr().out)
    # columns: format, step, params, vocab, context, tokens seen, path
    assert rows["d2"][:6] == ["nanochat", "60", "1.2M", "2048", "256", "491.5K"]
    assert rows["d2_bf16"][0] == "nanochat"
    assert rows["out-pystdlib-char"][:6] == ["nanogpt", "200", "108.9K", "96", "64", "819.2K"]
    assert rows["gpt2_tiny"][:6] == ["llmc", "-", "3.3M", "50257", "64", "-"]
    assert rows["gpt2_tiny_bf16"][0] == "llmc"
    assert rows["trained_200steps"][:6] == ["hf", "-", "149.2K", "512", "256", "-"]
    assert len(rows) == 7


def test_a_bad_checkpoint_is_an_error_line_and_the_rest_still_list(tmp_path, capsys):
    shutil.copy(PEERS / "llmc" / "gpt2_tiny_bf16.bin", tmp_path / "good.bin")
    shutil.copy(PEERS / "llmc" / "tokenizer_stdlib_bpe50257.bin", tmp_path / "tokenizer.bin")
    (tmp_path / "bad.bin").write_bytes((tmp_path / "good.bin").read_bytes()[:50_000])
    assert main(["models", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert "good" in _rows(out) and "bad" not in _rows(out)
    assert err.strip().startswith("gptlab: error: ") and "bad.bin" in err and "truncated" in err
    assert len(err.strip().splitlines()) == 1


def test_a_folder_without_checkpoints_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["models", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gptlab: error: ") and "no checkpoint found" in err and "Traceback" not in err
    assert main(["models", str(tmp_path / "missing")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


FIELDS = ["format", "path", "run", "step", "family", "params", "vocab_size", "context", "tokens_seen", "weights_hash"]


def test_json_prints_one_object_per_checkpoint_with_the_tables_numbers(capsys):
    assert main(["models", str(PEERS), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    got = {r["run"]: r for r in map(json.loads, lines)}
    assert len(lines) == len(got) == 7
    assert all(list(r) == FIELDS for r in got.values())
    d2 = got["d2"]
    assert (d2["format"], d2["step"], d2["vocab_size"], d2["context"], d2["tokens_seen"]) == \
        ("nanochat", 60, 2048, 256, 491_520)
    assert got["gpt2_tiny"]["step"] is None and got["gpt2_tiny"]["vocab_size"] == 50257
    assert all(len(r["weights_hash"]) >= 16 and Path(r["path"]).exists() for r in got.values())


def test_json_keeps_errors_on_stderr_and_exit_2(tmp_path, capsys):
    shutil.copy(PEERS / "llmc" / "gpt2_tiny_bf16.bin", tmp_path / "good.bin")
    shutil.copy(PEERS / "llmc" / "tokenizer_stdlib_bpe50257.bin", tmp_path / "tokenizer.bin")
    (tmp_path / "bad.bin").write_bytes((tmp_path / "good.bin").read_bytes()[:50_000])
    assert main(["models", str(tmp_path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert [json.loads(line)["run"] for line in out.splitlines()] == ["good"]
    assert err.startswith("gptlab: error: ") and "bad.bin" in err and len(err.strip().splitlines()) == 1
