"""`gptlab diagnose` as a user runs it: JSON lines, the table, and input that is bad in every way (every bad
input ends in one line on stderr and exit status 2; a run that diagnosed nothing does not exit 0)."""

import json
import os
import resource
import subprocess
import sys

import pytest
from conftest import run_gptlab

from gptlab.diagnose import io

GOOD = [
    {"id": "a", "domain": "finance", "prompt": "Item 1A. Risk Factors\n\nOur business depends on partners.",
     "completion": " We may lose them.\n\nItem 1B. Sustainable Risks\n\nClimate matters to our partners."},
    {"id": 2, "domain": "code", "language": "python", "prompt": "def f(xs):\n", "code_prefix": "def f(xs):\n",
     "completion": "    return sorted(xs\n", "probe": "sort", "max_tokens": 80},
    {"id": "c", "domain": "general", "prompt": "Water boils at", "completion": " 100 degrees at sea level."},
]


def write_lines(path, lines):
    with open(path, "wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else json.dumps(line).encode() + b"\n")
    return path


def test_the_parsers_warnings_on_model_code_stay_off_the_terminal(tmp_path):
    """`4x0` and `1if` draw SyntaxWarnings from Python's parser; they are the model's, not the user's, so stderr
    stays empty (a real fresh-set sample printed "<unknown>:1: SyntaxWarning: invalid decimal literal")."""
    sample = {"id": "w", "domain": "code", "language": "python", "prompt": "def f(x):\n", "code_prefix": "def f(x):\n",
              "completion": "    y = 1if x else 2\n    return [0x0, 4x000]\n"}
    out = run_gptlab("diagnose", write_lines(tmp_path / "w.jsonl", [sample]), "--json", "--no-exec")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert json.loads(out.stdout)["failures"] == ["syntax_error"]


def test_json_lines_one_per_input_in_order(tmp_path):
    out = run_gptlab("diagnose", write_lines(tmp_path / "s.jsonl", GOOD), "--json", "--no-exec")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["a", "2", "c"]
    assert rows[0]["failures"] == ["hallucinated_section"]
    assert rows[0]["evidence"]["hallucinated_section"]["items"][0]["heading"] == "Item 1B. Sustainable Risks"
    assert rows[1]["failures"] == ["syntax_error"] and rows[1]["evidence"]["syntax_error"]["line"] == 2
    assert rows[2]["failures"] == [] and "echo_words" in rows[2]["metrics"]
    assert all(set(r) == {"id", "failures", "metrics", "evidence", "passed"} for r in rows)
    assert rows[1]["passed"] is None                       # --no-exec: not executed, not "failed"


def test_table_has_a_row_per_sample_and_a_verdict_per_domain(tmp_path):
    out = run_gptlab("diagnose", write_lines(tmp_path / "s.jsonl", GOOD), "--no-exec")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.splitlines()[0].split()[:3] == ["id", "domain", "failures"]
    assert "Item 1B. Sustainable Risks: Item 1B is 'Unresolved Staff Comments'" in text
    assert "per domain:" in text and "finance" in text.split("per domain:")[1]
    assert "sort" in text.split("per probe:")[1] and "max_tokens=80" in text


def test_bad_input_never_crashes_and_keeps_one_output_per_line(tmp_path):
    huge = {"id": "huge", "domain": "general", "prompt": "Tell me about rivers.",
            "completion": "The river flows to the sea and the sea is salty. " * 60_000}   # ~3 MB
    lines = [
        b"{not json\n",
        json.dumps({"id": "no-completion", "domain": "general", "prompt": "x"}).encode() + b"\n",
        b'{"id": "latin1", "domain": "general", "prompt": "caf\xe9", "completion": "na\xefve text \xff"}\n',
        json.dumps({"id": "empty", "domain": "code", "language": "go", "prompt": "func f() {",
                    "code_prefix": "func f() {\n", "completion": ""}).encode() + b"\n",
        json.dumps({"id": "rust", "domain": "code", "language": "rust", "prompt": "fn main() {",
                    "completion": "    println!(\"hi\");\n}"}).encode() + b"\n",
        json.dumps({"id": "surrogate", "domain": "general", "prompt": "p", "completion": "\ud800 alone"}).encode()
        + b"\n",
        json.dumps({"id": "types", "domain": "code", "prompt": "p", "completion": "c", "requires": 5}).encode() + b"\n",
        b"\n",
        json.dumps(huge).encode() + b"\n",
        b"[" * 100_000 + b"\n",
    ]
    out = run_gptlab("diagnose", write_lines(tmp_path / "bad.jsonl", lines), "--json", "--no-exec", timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 9                                   # the blank line is skipped, nothing else
    by_id = {r["id"]: r for r in rows}
    assert "not JSON" in by_id["<line 1>"]["evidence"]["input_error"]
    assert "missing field 'completion'" in by_id["no-completion"]["evidence"]["input_error"]
    assert by_id["latin1"]["evidence"]["input"]["line"] == ["invalid UTF-8 replaced by U+FFFD"]
    assert by_id["empty"]["failures"] == ["no_code"]
    assert "unsupported language 'rust'" in by_id["rust"]["metrics"]["not_checked"]["syntax_error"]
    assert by_id["surrogate"]["evidence"]["input"]["completion"] == ["unpaired surrogates replaced by U+FFFD"]
    assert "'requires' must be a list" in by_id["types"]["evidence"]["input_error"]
    assert "repetition_loop" in by_id["huge"]["failures"]
    assert "the first 64,000 analysed" in by_id["huge"]["evidence"]["input"]["completion"][0]
    assert "not JSON" in by_id["<line 10>"]["evidence"]["input_error"]
    assert out.stderr.count("gptlab: warning:") == 5                    # 4 lines, then how many were skipped
    assert out.stderr.splitlines()[-1].endswith(": 4 of 9 lines skipped: not valid samples (input errors in the "
                                                "output)")


def test_unreadable_file_and_bad_options_are_one_line_errors(tmp_path):
    out = run_gptlab("diagnose", tmp_path / "missing.jsonl")
    assert out.returncode == 2 and out.stderr.startswith("gptlab: error:") and "missing.jsonl" in out.stderr
    out = run_gptlab("diagnose", write_lines(tmp_path / "s.jsonl", GOOD), "--workers", "0")
    assert out.returncode == 2 and "--workers 0" in out.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    out = run_gptlab("diagnose", empty)
    assert out.returncode == 2 and out.stdout == "" and _one_error_line(out.stderr) and "no samples" in out.stderr


def _one_error_line(stderr: str) -> bool:
    lines = stderr.splitlines()
    return len(lines) == 1 and lines[0].startswith("gptlab: error:") and "unexpected" not in lines[0]


@pytest.mark.parametrize("lines", [
    [b"not json\n", b"{also not\n"],
    [json.dumps({"id": 1, "domain": "code", "prompt": "p"}).encode() + b"\n", b"[1, 2]\n", b'"just a string"\n'],
    [b"x\n"] * 15,
])
def test_a_file_without_a_single_sample_fails_after_its_warnings(tmp_path, lines):
    out = run_gptlab("diagnose", write_lines(tmp_path / "none.jsonl", lines), "--json", "--no-exec")
    assert out.returncode == 2, out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr
    *warnings, last = out.stderr.splitlines()
    assert len(warnings) == min(len(lines), 10) and all(w.startswith("gptlab: warning:") for w in warnings)
    assert last.startswith("gptlab: error:") and "no line is a valid sample" in last
    assert f"({len(lines)} lines read, none usable)" in last


def test_one_good_line_among_bad_ones_succeeds_and_says_how_many_were_skipped(tmp_path):
    out = run_gptlab("diagnose", write_lines(tmp_path / "s.jsonl", [b"x\n"] * 12 + GOOD[2:]), "--json", "--no-exec")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 13
    warnings = out.stderr.splitlines()
    assert len(warnings) == 11 and warnings[-1].endswith("12 of 13 lines skipped: not valid samples (input errors "
                                                         "in the output)")


def test_files_that_are_not_files_of_samples_are_one_line_errors(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)                                      # no writer: opening it must not hang
    for path, kind in [("/dev/zero", "character device"), (tmp_path, "directory"), (fifo, "FIFO")]:
        out = run_gptlab("diagnose", path, timeout=60)
        assert out.returncode == 2 and _one_error_line(out.stderr) and kind in out.stderr, (path, out.stderr)


AS_LIMIT = 768 * 2**20    # `gptlab diagnose --no-exec` on one sample needs ~300 MB of address space (no torch)


def _run_limited(*args, timeout=60):
    """`gptlab ARGS` with its address space capped at AS_LIMIT: unbounded reading dies of MemoryError."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    return subprocess.run([sys.executable, "-m", "gptlab", *map(str, args)], preexec_fn=limit, capture_output=True,
                          text=True, timeout=timeout, check=False, env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_dev_zero_ends_quickly_in_bounded_memory():
    out = _run_limited("diagnose", "/dev/zero", "--no-exec")
    assert out.returncode == 2 and _one_error_line(out.stderr) and "/dev/zero" in out.stderr, out.stderr


def test_a_line_longer_than_the_limit_is_skipped_unread(tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:           # a sparse 1 GiB line of NUL bytes (no disk used), then a sample
        f.seek(2**30)
        f.write(b"\n" + json.dumps(GOOD[2]).encode() + b"\n")
    out = _run_limited("diagnose", path, "--json", "--no-exec")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert "line 1: longer than 8 MiB; skipped unread" in rows[0]["evidence"]["input_error"]
    assert rows[1]["id"] == "c" and rows[1]["failures"] == []
    assert out.stderr.splitlines()[0].endswith("huge.jsonl: line 1: longer than 8 MiB; skipped unread")


def test_line_length_limit_is_exact_and_keeps_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "MAX_LINE_BYTES", 200)
    good = json.dumps(GOOD[2]).encode()
    pad = b" " * (200 - len(good))                  # exactly 200 bytes before the newline: kept; 201: skipped
    path = write_lines(tmp_path / "s.jsonl", [good + pad + b"\n", b"[" + b" " * 199 + b"]\n", b"\n", good + b"\n",
                                             b"x" * 450])
    rows = list(io.read_lines(path))
    assert [r.number for r in rows] == [1, 2, 4, 5]
    assert rows[0].sample is not None and rows[2].sample is not None
    assert rows[1].error.message == "line 2: longer than 200 bytes; skipped unread"
    assert rows[3].error.message.startswith("line 5: longer than")


def test_table_output_survives_surrogates_and_control_characters(tmp_path):
    row = {"id": "a\ud800\x1b[2J", "domain": "general\udfff", "prompt": "p", "completion": " words here.",
           "probe": "p\ud800", "max_tokens": True, "temperature": float("nan")}
    out = run_gptlab("diagnose", write_lines(tmp_path / "s.jsonl", [json.dumps(row).encode() + b"\n"]), "--no-exec")
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "max_tokens=True" not in out.stdout and "nan" not in out.stdout
