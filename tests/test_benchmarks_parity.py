"""gptlab's lm-eval adapter against lm-eval's own `hf` model, on the Hugging Face fixture (the trained tiny GPT-2)
and the small local tasks in tests/data/lmeval: the same log-likelihood for every request (to 1e-4), the same
greedy flags and generated text, and the same task scores. Offline: the tasks read JSON files beside them.
"""

import os

os.environ["HF_DATASETS_OFFLINE"] = "1"         # before datasets is imported: never a download
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["DISABLE_MULTIPROC"] = "1"           # lm-eval's stderr bootstrap in this process (gptlab bench's way)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

lm_eval = pytest.importorskip("lm_eval")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")               # lm-eval's hf model needs it

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from gptlab.evaluate.benchmarks import run_benchmarks  # noqa: E402
from gptlab.evaluate.lm_eval_model import GptlabLM  # noqa: E402
from gptlab.store import Store  # noqa: E402

ROOT = Path(__file__).parent
HF_DIR = ROOT / "fixtures" / "peers" / "hf_gpt2" / "trained_200steps"
TASKS = ROOT / "data" / "lmeval"
ALL = ["gptlab_tiny_choice", "gptlab_tiny_cloze", "gptlab_tiny_gen", "gptlab_tiny_rolling"]
TOL = 1e-4


@pytest.fixture(scope="module")
def manager():
    return TaskManager(include_path=str(TASKS), include_defaults=False)


def _instances(manager, name):
    task = manager.load([name])["tasks"][name]
    task.set_config(key="num_fewshot", value=0)
    task.build_all_requests()
    return task.instances


def _extra_pairs(request_type="loglikelihood"):
    """Edge cases the tasks do not have: an empty context, trailing spaces, a context longer than the model's
    256 positions (cut from the left), a continuation that starts with the separator."""
    long = "def f(x):\n    return x + 1\n" * 40
    pairs = [("", "import os"), ("x = 1  ", "y"), (long, "\n"), ("a", "<|endoftext|>def"), ("print(", "1)")]
    return [Instance(request_type, {}, pair, i) for i, pair in enumerate(pairs)]


@pytest.fixture(scope="module", params=[False, True], ids=["tokenizer-bos", "add-bos"])
def pair(request):
    """(lm-eval's hf model, gptlab's adapter), both as the tokenizer says (a GPT-2: no BOS) or both with BOS."""
    bos = request.param
    hf = HFLM(pretrained=str(HF_DIR), device="cpu", batch_size=4, **({"add_bos_token": True} if bos else {}))
    ours = GptlabLM(path=str(HF_DIR), device="cpu", batch_size=5, **({"add_bos_token": True} if bos else {}))
    assert ours.add_bos is bos and ours.max_length == hf.max_length == 256
    return hf, ours


def test_the_same_tokens_are_scored(pair, manager):
    hf, ours = pair
    requests = _instances(manager, "gptlab_tiny_choice") + _extra_pairs()
    for r in requests:
        ctx, cont = r.args
        if ctx:
            assert ours.encode_pair(ctx, cont) == hf._encode_pair(ctx, cont)


def _greedy_pairs(ours):
    """(context, the model's own greedy continuation of it): requests whose greedy flag should be True."""
    contexts = ["class Point:\n    def __init__(self", "import os\nimport", "for i in range(10):\n    print("]
    asks = [Instance("generate_until", {}, (c, {"until": [], "max_gen_toks": 4, "do_sample": False}), i)
            for i, c in enumerate(contexts)]
    return [Instance("loglikelihood", {}, (c, text), i) for i, (c, text) in
            enumerate(zip(contexts, ours.generate_until(asks)))]


def test_loglikelihood_of_every_request_matches_lm_evals_hf_model(pair, manager):
    hf, ours = pair
    requests = _instances(manager, "gptlab_tiny_choice") + _instances(manager, "gptlab_tiny_cloze") + \
        _extra_pairs() + _greedy_pairs(ours)
    want, got = hf.loglikelihood(requests, disable_tqdm=True), ours.loglikelihood(requests)
    assert len(got) == len(want) == 12 * 4 + 10 + 5 + 3
    for (w, wg), (g, gg), r in zip(want, got, requests):
        assert abs(w - g) <= TOL, (r.args, w, g)
        assert wg == gg, r.args
    assert any(g for _, g in got)                   # the greedy flag is not trivially False


def test_rolling_loglikelihood_matches_lm_evals_hf_model(manager):
    """Documents of up to three windows (658 tokens against a 256-token context). Compared as the
    tokenizer says (no BOS): with add_bos_token lm-eval's hf model feeds the separator twice."""
    hf = HFLM(pretrained=str(HF_DIR), device="cpu", batch_size=4)
    ours = GptlabLM(path=str(HF_DIR), device="cpu")
    requests = _instances(manager, "gptlab_tiny_rolling")
    lengths = [len(ours.encode(r.args[0])) for r in requests]
    assert max(lengths) > 2 * 256 and min(lengths) < 256         # three windows, and one
    want, got = hf.loglikelihood_rolling(requests, disable_tqdm=True), ours.loglikelihood_rolling(requests)
    for w, g, r in zip(want, got, requests):
        assert abs(w - g) <= TOL, (r.args[0][:40], w, g)


def test_greedy_generation_matches_lm_evals_hf_model(pair, manager):
    hf, ours = pair
    requests = _instances(manager, "gptlab_tiny_gen")
    want, got = hf.generate_until(requests, disable_tqdm=True), ours.generate_until(requests)
    assert got == want
    assert all("\n" not in g for g in got) and any(g for g in got)
    # longer than one of the adapter's 32-token rounds: rows continue from what they generated
    kw = {"until": ["):\n"], "max_gen_toks": 90, "do_sample": False}
    longer = [Instance("generate_until", {}, (c, dict(kw)), i) for i, c in
              enumerate(["class Queue:\n    def __init__(self", "import os\n\n\ndef main(", "x = [", "#"])]
    want, got = hf.generate_until(longer, disable_tqdm=True), ours.generate_until(longer)
    assert got == want and max(len(ours.encode(g, bos=False)) for g in got) > 40


def test_task_scores_match_lm_evals_hf_model(manager, tmp_path):
    """lm-eval's simple_evaluate on its hf model against the scores `gptlab bench` stores for the same folder:
    every metric and its stderr."""
    hf = HFLM(pretrained=str(HF_DIR), device="cpu", batch_size=4)
    want = lm_eval.simple_evaluate(model=hf, tasks=ALL, task_manager=manager, bootstrap_iters=100)["results"]
    db = tmp_path / "r.sqlite"
    summary = run_benchmarks([str(HF_DIR)], ",".join(ALL), db=str(db), include_path=TASKS, device="cpu",
                             echo=lambda line: None)
    assert summary.computed == len(ALL)
    got = {(r["task"], r["metric"]): r for r in summary.rows}
    store = Store(db, readonly=True)
    try:
        assert len(store.benchmark_rows()) == len(ALL)
    finally:
        store.close()
    compared = 0
    for task in ALL:
        for key, value in want[task].items():
            metric, sep, filt = key.partition(",")
            if not sep or metric.endswith("_stderr") or filt != "none":
                continue
            row = got[(task, metric)]
            assert row["value"] == pytest.approx(float(value), rel=1e-5, abs=1e-9), (task, metric)
            stderr = want[task].get(f"{metric}_stderr,none")
            if metric in ("acc", "acc_norm", "exact_match"):          # closed form: no bootstrap involved
                assert row["stderr"] == pytest.approx(float(stderr), rel=1e-9), (task, metric)
            compared += 1
    assert compared == 2 + 2 + 1 + 3
