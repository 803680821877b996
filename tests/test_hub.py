"""Hugging Face Hub ids as PATHs (gptlab/checkpoints/hub.py), on a Hub cache this test lays out on disk.

Nothing here reaches the network: HF_HUB_OFFLINE=1 and HF_HOME / HF_HUB_CACHE point into tmp_path. The cache
has the layout huggingface_hub writes (models--org--name/snapshots/<commit>/ and refs/<branch or tag>), holding
a tiny GPT-2 that transformers wrote (save_pretrained) with the peers' GPT-2 style tokenizer.
"""

import json
import shutil
from pathlib import Path

import pytest

from gptlab.checkpoints import discover, hub, load
from gptlab.cli import main
from gptlab.errors import GptlabError
from tests.conftest import run_gptlab

transformers = pytest.importorskip("transformers")
pytest.importorskip("huggingface_hub")

PEERS = Path(__file__).parent / "fixtures" / "peers"
VAL = PEERS / "text" / "val.txt"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OLD = "89abcdef0123456789abcdef0123456789abcdef"


def _tiny_gpt2(folder: Path, seed: int) -> None:
    import torch
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=512, n_positions=128, n_embd=32, n_layer=2, n_head=2,
                                  bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(folder)
    shutil.copy(PEERS / "hf_gpt2" / "tokenizer.json", folder / "tokenizer.json")


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """HF_HOME with hub/models--tiny-org--gpt2-mini: main -> COMMIT, tag v0 -> OLD (another model)."""
    home = tmp_path_factory.mktemp("hf_home")
    repo = home / "hub" / "models--tiny-org--gpt2-mini"
    _tiny_gpt2(repo / "snapshots" / COMMIT, seed=0)
    _tiny_gpt2(repo / "snapshots" / OLD, seed=1)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "refs" / "v0").write_text(OLD)
    return home


@pytest.fixture
def offline(hub_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(hub_cache))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    return hub_cache


def test_which_names_are_tried_as_hub_ids():
    for yes in ("gpt2", "openai-community/gpt2", "org/name@main", "org/name@v1.0", f"org/m@{COMMIT}",
                "org/name@refs/pr/1"):
        assert hub.is_hub_id(yes), yes
    for no in ("./gpt2", "/abs/gpt2", "~/gpt2", "a/b/c", "ckpt.pt", "out/model.bin", "org/name@", "a--b",
               "org/..", "-x", "org/name@x y", ""):
        assert not hub.is_hub_id(no), no


def test_an_id_resolves_to_its_snapshot_and_revisions_pick_others(offline):
    snap = offline / "hub" / "models--tiny-org--gpt2-mini" / "snapshots"
    for spec, commit, label in (("tiny-org/gpt2-mini", COMMIT, "tiny-org/gpt2-mini"),
                                ("tiny-org/gpt2-mini@v0", OLD, "tiny-org/gpt2-mini@v0"),
                                (f"tiny-org/gpt2-mini@{OLD}", OLD, f"tiny-org/gpt2-mini@{OLD}")):
        refs = discover(spec)
        assert [(r.format, Path(r.path), r.run) for r in refs] == [("hf", snap / commit, label)]
    a, b = (load(discover(s)[0]).info.weights_hash for s in ("tiny-org/gpt2-mini", "tiny-org/gpt2-mini@v0"))
    assert a != b


def test_hf_cache_variable_points_elsewhere(offline, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("HF_HUB_CACHE", str(offline / "hub"))
    assert discover("tiny-org/gpt2-mini")[0].run == "tiny-org/gpt2-mini"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(GptlabError, match="not in the Hugging Face cache"):
        discover("tiny-org/gpt2-mini")


def test_a_local_path_always_wins(offline, tmp_path):
    local = tmp_path / "tiny-org" / "gpt2-mini"
    _tiny_gpt2(local, seed=7)
    refs = discover("tiny-org/gpt2-mini")
    assert [Path(r.path).resolve() for r in refs] == [local.resolve()]
    assert refs[0].run == "gpt2-mini"


def test_offline_with_nothing_cached_is_one_line(offline, capsys):
    for spec, words in (("nobody/nothing", "nobody/nothing is not in the Hugging Face cache"),
                        ("tiny-org/gpt2-mini@no-such-branch", "tiny-org/gpt2-mini@no-such-branch is not in"),
                        ("gpt2", "gpt2 is not in the Hugging Face cache")):
        for command in (["models", spec], ["eval", spec, "--no-probes"], ["sample", spec, "Hi"]):
            assert main(command) == 2
            err = capsys.readouterr().err
            assert err.startswith("gptlab: error: ") and words in err and "HF_HUB_OFFLINE" in err, err
            assert err.count("\n") == 1 and "Traceback" not in err


def test_a_snapshot_without_safetensors_is_refused(offline):
    repo = offline / "hub" / "models--tiny-org--pickles-only" / "snapshots" / COMMIT
    repo.mkdir(parents=True)
    (repo / "config.json").write_text("{}")
    (repo / "pytorch_model.bin").write_bytes(b"not read")
    (repo.parent.parent / "refs").mkdir()
    (repo.parent.parent / "refs" / "main").write_text(COMMIT)
    with pytest.raises(GptlabError, match="no safetensors weights.*never loads pickled"):
        discover("tiny-org/pickles-only")


def test_eval_models_sample_and_compare_take_hub_ids(offline, tmp_path, capsys):
    """The CLI end to end, in a subprocess with only the environment set: the id scores the same bpb as the
    snapshot folder itself, `models` and `compare` name it by its id."""
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(offline)}
    got = run_gptlab("eval", "tiny-org/gpt2-mini", "--no-probes", "--bpb", f"val={VAL}", "--json",
                     "--db", tmp_path / "a.sqlite", cwd=tmp_path, env=env)
    assert got.returncode == 0, got.stderr
    by_id = [json.loads(line) for line in got.stdout.splitlines()]
    assert [r["model"] for r in by_id] == ["tiny-org/gpt2-mini"]
    folder = offline / "hub" / "models--tiny-org--gpt2-mini" / "snapshots" / COMMIT
    assert main(["eval", str(folder), "--no-probes", "--bpb", f"val={VAL}", "--json",
                 "--db", str(tmp_path / "b.sqlite")]) == 0
    by_path = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert by_id[0]["bpb"] == pytest.approx(by_path[0]["bpb"], abs=1e-9) and by_id[0]["bpb"] > 1
    assert by_path[0]["model"] == "tiny-org/gpt2-mini"        # a snapshot folder is named for its repository

    assert main(["models", "tiny-org/gpt2-mini@v0", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["run"], row["format"], row["path"]) == ("tiny-org/gpt2-mini@v0", "hf", str(folder.parent / OLD))

    assert main(["sample", "tiny-org/gpt2-mini", "def f", "--max-tokens", "5", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("def f")

    assert main(["compare", "tiny-org/gpt2-mini", "tiny-org/gpt2-mini@v0", "--no-eval", "--json",
                 "--db", str(tmp_path / "a.sqlite"), "--out", str(tmp_path / "cmp")]) == 2
    assert "tiny-org/gpt2-mini@v0" in capsys.readouterr().err     # only main is in the store yet
    assert main(["compare", "tiny-org/gpt2-mini", "tiny-org/gpt2-mini@v0", "--json", "--samples", "1",
                 "--max-tokens", "4", "--bpb", f"val={VAL}", "--db", str(tmp_path / "a.sqlite"),
                 "--out", str(tmp_path / "cmp")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(m["given_as"], m["run"]) for m in doc["models"]] == [("tiny-org/gpt2-mini", "tiny-org/gpt2-mini"),
                                                                 ("tiny-org/gpt2-mini@v0", "tiny-org/gpt2-mini@v0")]
    bpb = next(r for r in doc["rows"] if r["section"] == "bpb" and r["quantity"] == "val")
    assert list(bpb["values"].values())[0]["value"] == pytest.approx(by_id[0]["bpb"], abs=1e-9)
