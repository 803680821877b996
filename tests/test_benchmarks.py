"""`gptlab bench` and its scores downstream: stored once per (weights, task, version, n-shot, limit, protocol),
reused on a rerun, shown per checkpoint in the report, ranked by `compare`, exported by `gptlab results`; the
adapter on gptlab's own families (BOS before every document) agrees with gptlab's bits-per-byte scoring and
sampling engine; lm-eval itself finds the model "gptlab"; bad input is one line. Offline, on the small local
tasks in tests/data/lmeval (parity with lm-eval's own hf model: tests/test_benchmarks_parity.py).
"""

import os

os.environ["HF_DATASETS_OFFLINE"] = "1"         # before datasets is imported: never a download
os.environ["HF_HUB_OFFLINE"] = "1"

import json  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

lm_eval = pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from conftest import older_store  # noqa: E402

from gptlab.checkpoints import discover, load  # noqa: E402
from gptlab.cli import main  # noqa: E402
from gptlab.compare import records, results  # noqa: E402
from gptlab.compare.measurements import Measurements, resolve  # noqa: E402
from gptlab.compare.ranking import build  # noqa: E402
from gptlab.engine import Engine, Request  # noqa: E402
from gptlab.evaluate.benchmarks import run_benchmarks  # noqa: E402
from gptlab.evaluate.bpb import score_tokens  # noqa: E402
from gptlab.evaluate.lm_eval_model import GptlabLM  # noqa: E402
from gptlab.report import render  # noqa: E402
from gptlab.store import SCHEMA_VERSION, Store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "tests" / "fixtures" / "peers"
HF_DIR = PEERS / "hf_gpt2" / "trained_200steps"
CHAR = PEERS / "nanogpt" / "out-pystdlib-char"
TASKS = ROOT / "tests" / "data" / "lmeval"
TWO = "gptlab_tiny_choice,gptlab_tiny_rolling"
RECORD_FIELDS = ["model", "step", "task", "task_version", "num_fewshot", "limit", "metric", "filter", "value",
                 "stderr", "n_docs", "cached"]
quiet = dict(echo=lambda line: None, include_path=TASKS, device="cpu")


def _requests(name):
    task = TaskManager(include_path=str(TASKS), include_defaults=False).load([name])["tasks"][name]
    task.set_config(key="num_fewshot", value=0)
    task.build_all_requests()
    return task.instances


@pytest.fixture(scope="module")
def bench(tiny_run, tmp_path_factory):
    """Two tasks on the tiny run's two checkpoints and the Hugging Face fixture, in one store."""
    db = tmp_path_factory.mktemp("bench") / "r.sqlite"
    summary = run_benchmarks([str(tiny_run), str(HF_DIR)], TWO, db=str(db), **quiet)
    return db, summary, tiny_run


# ---------------------------------------------------------------- the adapter on gptlab's own families


def test_rolling_equals_gptlab_bpb_scoring_with_disjoint_windows(tiny_run):
    """lm-eval's rolling windows are bpb.py's windows with stride = context: the same nats, BOS first."""
    lm = GptlabLM(path=str(tiny_run), device="cpu")
    assert (lm.info.step, lm.add_bos, lm.protocol, lm.max_length) == (8, True, "lmeval-1+bos", 64)
    texts = [r.args[0] for r in _requests("gptlab_tiny_rolling")]
    got = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)])
    bos, tb = lm.tokenizer.bos_id, lm.tokenizer.token_bytes()
    for text, logp in zip(texts, got):
        ids = [bos] + lm.tokenizer.encode(text)
        assert len(ids) > 64 or text.startswith("x = 1")
        want = score_tokens(lm.model, [ids], tb, stride=64, batch_size=4)
        assert -logp == pytest.approx(want.nll, abs=1e-4)
    short = texts[-1]                                   # one window: an empty context is the same request
    same = lm.loglikelihood([Instance("loglikelihood", {}, ("", short), 0)])[0][0]
    assert same == pytest.approx(got[-1], abs=1e-5)


def test_a_tokenizer_without_a_separator_uses_its_first_token_as_context():
    lm = GptlabLM(path=str(CHAR), device="cpu")
    assert lm.tokenizer.bos_id is None and lm.protocol == "lmeval-1+nobos"
    text = "def f(x):\n    return x\n" * 20
    ids = lm.tokenizer.encode(text)
    got = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])[0]
    want = score_tokens(lm.model, [ids], lm.tokenizer.token_bytes(), stride=lm.max_length)
    assert want.tokens == len(ids) - 1 and -got == pytest.approx(want.nll, abs=1e-4)
    pairs = [("", "d"), ("", "de"), ("de", ""), ("d", "e")]        # an empty context: its first character
    one, two, empty, same = lm.loglikelihood([Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)])
    assert one == empty == (0.0, True) and two == same and two[0] < 0


def test_greedy_generation_is_the_engines(tiny_run):
    lm = GptlabLM(path=str(tiny_run), device="cpu", batch_size=3)
    requests = _requests("gptlab_tiny_gen")
    got = lm.generate_until(requests)
    engine = Engine(lm.model, lm.tokenizer)
    alone = engine.generate([Request(r.args[0], temperature=0.0) for r in requests], 24)
    for text, c in zip(got, alone):
        assert text == lm.tokenizer.decode(c.tokens).split("\n")[0]
    sampled = [Instance("generate_until", {}, ("def f(", {"until": ["\n"], "do_sample": True, "temperature": 1.0,
                                                        "max_gen_toks": 8}), i) for i in range(4)]
    once, twice = lm.generate_until(sampled), lm.generate_until(sampled)
    assert once == twice and len(set(once)) > 1          # seeded per request: repeats differ, reruns do not


def test_lm_eval_finds_the_model_by_name():
    assert lm_eval.api.registry.get_model("gptlab") is GptlabLM
    res = lm_eval.simple_evaluate(model="gptlab", model_args=f"path={HF_DIR},batch_size=4", tasks=["gptlab_tiny_choice"],
                                  task_manager=TaskManager(include_path=str(TASKS), include_defaults=False), limit=4,
                                  device="cpu", bootstrap_iters=0)
    assert res["results"]["gptlab_tiny_choice"]["acc,none"] in (0.0, 0.25, 0.5, 0.75, 1.0)


@pytest.mark.slow       # lm-eval's command line indexes its ~15,000 task YAMLs (7 s idle, a minute on a busy machine)
def test_lm_evals_own_command_line_runs_the_gptlab_model():
    res = subprocess.run([sys.executable, "-m", "gptlab.evaluate.lm_eval_cli", "--model", "gptlab", "--model_args",
                          f"path={HF_DIR}", "--tasks", "gptlab_tiny_choice", "--include_path", str(TASKS),
                          "--limit", "3", "--device", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "gptlab_tiny_choice" in res.stdout and "acc_norm" in res.stdout


# ---------------------------------------------------------------- the job and the store


def test_scores_are_stored_once_per_key(bench):
    db, summary, _ = bench
    assert (summary.checkpoints, summary.computed, summary.cached) == (3, 6, 0) and summary.model_calls > 0
    store = Store(db, readonly=True)
    try:
        rows = store.benchmark_rows()
    finally:
        store.close()
    assert len(rows) == 6
    assert {(r["task"], r["task_version"], r["num_fewshot"], r["doc_limit"]) for r in rows} == \
        {("gptlab_tiny_choice", "1.0", 0, 0.0), ("gptlab_tiny_rolling", "1.0", 0, 0.0)}
    assert {r["protocol"] for r in rows if r["run"] == "run"} == {"lmeval-1+bos"}
    assert {r["protocol"] for r in rows if r["run"] == "trained_200steps"} == {"lmeval-1+nobos"}
    choice = next(r for r in rows if r["task"] == "gptlab_tiny_choice")
    metrics, docs = json.loads(choice["metrics_json"]), json.loads(choice["docs_json"])
    assert set(metrics) == {"acc,none", "acc_norm,none"} and choice["n_docs"] == 12
    assert docs["acc,none"]["doc_ids"] == list(range(12))
    assert sum(a for a, _ in docs["acc,none"]["columns"]) / 12 == pytest.approx(metrics["acc,none"]["value"])


def test_a_rerun_reuses_every_score_and_runs_no_model(bench):
    db, _, tiny_run = bench
    again = run_benchmarks([str(tiny_run), str(HF_DIR)], TWO, db=str(db), **quiet)
    assert (again.computed, again.cached, again.model_calls) == (0, 6, 0)
    assert all(r["cached"] for r in again.rows)


def test_n_shot_and_limit_are_part_of_the_key(bench, tmp_path):
    db = tmp_path / "r.sqlite"
    shutil.copy(bench[0], db)
    got = run_benchmarks([str(HF_DIR)], "gptlab_tiny_choice", db=str(db), limit=5, num_fewshot=2, **quiet)
    assert (got.computed, got.cached) == (1, 0)
    assert {(r["num_fewshot"], r["limit"], r["n_docs"]) for r in got.rows} == {(2, 5.0, 5)}
    assert run_benchmarks([str(HF_DIR)], "gptlab_tiny_choice", db=str(db), **quiet).cached == 1


def test_json_lines_on_stdout(bench, capsys):
    db, _, _ = bench
    assert main(["bench", str(HF_DIR), "--tasks", "gptlab_tiny_choice", "--include-path", str(TASKS), "--db", str(db),
                 "--json", "--device", "cpu"]) == 0
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.splitlines()]
    assert [list(r) for r in lines] == [RECORD_FIELDS] * 2
    assert [r["metric"] for r in lines] == ["acc", "acc_norm"] and all(r["cached"] for r in lines)
    assert "1 checkpoint in" in out.err


# ---------------------------------------------------------------- report, compare, results


def test_the_report_has_a_benchmarks_table_per_checkpoint(bench):
    db, _, tiny_run = bench
    store = Store(db, readonly=True)
    try:
        _, _, sections = render(store, [str(tiny_run)])
    finally:
        store.close()
    section = next(s for s in sections if s.title == "Benchmarks")
    assert section.markdown.count("| task | version | n-shot |") == 2
    assert "**run@4**" in section.markdown and "**run@8**" in section.markdown and "bits_per_byte ↓" in \
        section.markdown and "acc_norm ↑" in section.markdown


def test_a_report_without_scores_has_no_benchmarks_section(tmp_path):
    from report_fixtures import add_run
    store = Store(tmp_path / "r.sqlite")
    add_run(store, root=str(tmp_path), samples=False)
    _, _, sections = render(store, ["d12"])
    store.close()
    assert "Benchmarks" not in [s.title for s in sections]


def test_compare_ranks_models_on_the_stored_metrics(bench):
    """Point estimates reproduce lm-eval's aggregation of the per-document values (mean, weighted perplexity,
    bits per byte); differences are paired by document; the JSON rows carry them."""
    db, _, tiny_run = bench
    store = Store(db, readonly=True)
    try:
        models = resolve(store, [f"{tiny_run}@8", str(HF_DIR)])
        c = build(Measurements(store, models, suite=None), resamples=200)
        stored = {(r["weights_hash"], r["task"]): json.loads(r["metrics_json"]) for r in store.benchmark_rows()}
    finally:
        store.close()
    rows = {q.name: q for q in c.benchmarks}
    assert set(rows) == {"gptlab_tiny_choice acc (0-shot)", "gptlab_tiny_choice acc_norm (0-shot)",
                         "gptlab_tiny_rolling word_perplexity (0-shot)", "gptlab_tiny_rolling byte_perplexity (0-shot)",
                         "gptlab_tiny_rolling bits_per_byte (0-shot)"}
    for m in models:
        for name, key, task in (("gptlab_tiny_choice acc (0-shot)", "acc,none", "gptlab_tiny_choice"),
                                ("gptlab_tiny_rolling bits_per_byte (0-shot)", "bits_per_byte,none", "gptlab_tiny_rolling"),
                                ("gptlab_tiny_rolling word_perplexity (0-shot)", "word_perplexity,none",
                                 "gptlab_tiny_rolling")):
            want = stored[(m.weights_hash, task)][key]["value"]
            assert rows[name].cells[m.label].value == pytest.approx(want, rel=1e-9)
    bpb = rows["gptlab_tiny_rolling bits_per_byte (0-shot)"]
    assert bpb.lower_is_better and bpb.paired and bpb.units == "4 documents" and len(bpb.ranking) == 2
    assert not rows["gptlab_tiny_choice acc (0-shot)"].lower_is_better
    doc = records.comparison_record(c)
    assert {r["quantity"] for r in doc["rows"] if r["section"] == "benchmark"} == set(rows)


def test_results_exports_one_record_per_metric(bench):
    db, _, tiny_run = bench
    doc = json.loads(results.export(str(db), [str(tiny_run)], what="benchmarks"))
    assert set(doc) == {"export_version", "store", "detector_version", "benchmarks"}
    rows = doc["benchmarks"]
    assert len(rows) == 2 * (2 + 3) and [list(r) for r in rows] == [list(results.FIELDS["benchmarks"])] * len(rows)
    assert {(r["step"], r["task"], r["metric"]) for r in rows} >= {(4, "gptlab_tiny_choice", "acc"),
                                                                 (8, "gptlab_tiny_rolling", "bits_per_byte")}
    assert all(r["higher_is_better"] == (r["metric"] in ("acc", "acc_norm")) for r in rows)


def test_a_v2_store_gains_the_benchmarks_table_and_readers_see_none(tmp_path):
    db = tmp_path / "v2.sqlite"
    older_store(db, 2, "benchmarks", "ladder_rungs")
    reader = Store(db, readonly=True)
    assert reader.benchmark_rows() == [] and reader.get_benchmark("w", "t", "1", 0, 0.0, "p") is None
    reader.close()
    writer = Store(db)
    assert writer.query("SELECT value FROM meta WHERE key='schema_version'")[0]["value"] == str(SCHEMA_VERSION) == "4"
    assert writer.benchmark_rows() == []
    writer.close()


# ---------------------------------------------------------------- bad input: one line, exit status 2


@pytest.mark.parametrize("args, message", [
    pytest.param(["--tasks", "gptlab_tiny_choise"], "did you mean gptlab_tiny_choice",
                 marks=pytest.mark.slow),                     # an unknown name is looked up among all of lm-eval's
    (["--tasks", ","], "--tasks: name at least one"),
    (["--tasks", "gptlab_tiny_choice", "--limit", "0"], "--limit 0:"),
    (["--tasks", "gptlab_tiny_choice", "--limit", "2.5"], "--limit 2.5:"),
    (["--tasks", "gptlab_tiny_choice", "--limit", "many"], "--limit 'many':"),
    (["--tasks", "gptlab_tiny_choice", "--num-fewshot", "-1"], "--num-fewshot -1:"),
    (["--tasks", "gptlab_tiny_choice", "--batch-size", "0"], "--batch-size 0:"),
])
def test_bad_arguments_are_one_line(args, message, tmp_path, capsys):
    assert main(["bench", str(HF_DIR), "--include-path", str(TASKS), "--db", str(tmp_path / "r.sqlite"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gptlab: error: ") and message in err and err.count("\n") == 1


def test_a_missing_include_path_and_a_missing_checkpoint_are_one_line(tmp_path, capsys):
    assert main(["bench", str(HF_DIR), "--tasks", "x", "--include-path", str(tmp_path / "nope")]) == 2
    assert main(["bench", str(tmp_path / "nothing"), "--tasks", "x"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "--include-path" in err[0] and "not a folder" in err[0] and "no such file" in err[1]


def test_a_task_that_runs_model_code_is_refused(tmp_path, capsys):
    shutil.copy(TASKS / "data.py", tmp_path)
    shutil.copy(TASKS / "tiny_gen.json", tmp_path)
    text = (TASKS / "tiny_gen.yaml").read_text().replace("task: gptlab_tiny_gen", "task: runs_code")
    (tmp_path / "code.yaml").write_text(text.replace("tag: gptlab_tiny", "unsafe_code: true"))
    assert main(["bench", str(HF_DIR), "--tasks", "runs_code", "--include-path", str(tmp_path),
                 "--db", str(tmp_path / "r.sqlite")]) == 2
    assert "outside gptlab's sandbox" in capsys.readouterr().err


def test_without_lm_eval_the_error_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "lm_eval", None)         # `import lm_eval` now raises ImportError
    assert main(["bench", str(HF_DIR), "--tasks", "hellaswag", "--db", str(tmp_path / "r.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err == "gptlab: error: benchmarks need lm-evaluation-harness: pip install 'gptlab[bench]'\n"
    assert not (tmp_path / "r.sqlite").exists()


def test_the_model_needs_a_path():
    with pytest.raises(Exception, match="path=CHECKPOINT"):
        GptlabLM()
    loaded = load(discover(HF_DIR)[0])
    assert GptlabLM(loaded=loaded, add_bos_token="true").add_bos is True
