"""`gptlab diagnose` as a user runs it: JSON lines, the table, and input that is bad in every way."""

import json

from conftest import run_gptlab

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
    assert out.stderr.count("gptlab: warning:") == 4


def test_unreadable_file_and_bad_options_are_one_line_errors(tmp_path):
    out = run_gptlab("diagnose", tmp_path / "missing.jsonl")
    assert out.returncode == 2 and out.stderr.startswith("gptlab: error:") and "missing.jsonl" in out.stderr
    out = run_gptlab("diagnose", write_lines(tmp_path / "s.jsonl", GOOD), "--workers", "0")
    assert out.returncode == 2 and "--workers 0" in out.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = run_gptlab("diagnose", empty)
    assert out.returncode == 0 and "no samples" in out.stderr
