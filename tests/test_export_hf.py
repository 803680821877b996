"""`gptlab export PATH --format hf --out DIR` (gptlab/export/), checked with transformers itself.

For every family gptlab reads (the peers' own checkpoints in tests/fixtures/peers and a tiny gptlab model with
grouped-query heads): transformers loads DIR (stock GPT2LMHeadModel for the GPT-2 family, the shipped modelling
code for gptlab's and nanochat's), its logits equal gptlab's to 1e-4, AutoTokenizer gives gptlab's ids, and
`gptlab eval DIR` scores the bpb of the original checkpoint. Offline: HF_HUB_OFFLINE=1, HF_HOME in tmp (where
transformers copies shipped modelling code).
"""

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY
from gptlab.checkpoints import discover, load
from gptlab.cli import main
from gptlab.engine import Engine
from gptlab.errors import GptlabError
from gptlab.export import hf_folder

transformers = pytest.importorskip("transformers")

PEERS = Path(__file__).parent / "fixtures" / "peers"
VAL = (PEERS / "text" / "val.txt").read_text()
CASES = {   # name -> (checkpoint, the model class transformers builds, files shipped besides weights/config)
    "llmc_fp32": (PEERS / "llmc" / "gpt2_tiny.bin", "GPT2LMHeadModel"),
    "llmc_bf16": (PEERS / "llmc" / "gpt2_tiny_bf16.bin", "GPT2LMHeadModel"),
    "nanogpt_char": (PEERS / "nanogpt" / "out-pystdlib-char" / "ckpt.pt", "GPT2LMHeadModel"),
    "hf_gpt2": (PEERS / "hf_gpt2" / "trained_200steps", "GPT2LMHeadModel"),
    "nanochat": (PEERS / "nanochat" / "base_dir" / "base_checkpoints" / "d2", "GptlabNanochatForCausalLM"),
    "nanochat_bf16": (PEERS / "nanochat" / "base_dir" / "base_checkpoints" / "d2_bf16", "GptlabNanochatForCausalLM"),
    "gptlab": (None, "GptlabForCausalLM"),
}


@pytest.fixture(scope="module", autouse=True)
def offline_hf_home(tmp_path_factory):
    """HF_HOME in tmp, offline; transformers copies shipped modelling code into tmp too, not ~/.cache."""
    from transformers import dynamic_module_utils
    home = tmp_path_factory.mktemp("hf_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(home))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(home / "modules"))
        yield home


@pytest.fixture(scope="module")
def gqa_run(tmp_path_factory):
    """A tiny gptlab run: 2 layers, 2 query heads sharing 1 key/value head, 2 steps."""
    from gptlab.config import load_config
    from gptlab.train import train
    out = tmp_path_factory.mktemp("gqa") / "run"
    cfg = load_config(TINY, ["model.depth=2", "model.n_kv_head=1", "train.steps=2", "train.save_every=2",
                             "train.eval_every=2"])
    train(cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory, gqa_run):
    """name -> (the original's LoadedModel, the export folder)."""
    root = tmp_path_factory.mktemp("exports")
    got = {}
    for name, (path, _) in CASES.items():
        src = path or gqa_run
        out = root / name
        assert main(["export", str(src), "--format", "hf", "--out", str(out)]) == 0
        got[name] = (load(discover(src)[-1]), out)
    return got


def _ids(lm, n: int = 200) -> list[int]:
    bos = [lm.tokenizer.bos_id] if lm.tokenizer.bos_id is not None else []
    return (bos + lm.tokenizer.encode(VAL[:4000]))[:min(n, lm.info.context)]


@pytest.mark.parametrize("name", CASES)
def test_transformers_loads_the_folder_and_its_logits_equal_gptlabs(exported, name):
    lm, out = exported[name]
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "gptlab_export.json"} <= files
    shipped = {f for f in files if f.endswith(".py")}
    model = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, dtype=torch.float32)
    assert type(model).__name__ == CASES[name][1]
    assert bool(shipped) == (CASES[name][1] != "GPT2LMHeadModel")   # stock GPT-2 needs no code of ours
    x = torch.tensor([_ids(lm)])
    with torch.no_grad():
        ours = lm.model(x)
        theirs = model.eval()(x).logits.float()
    assert theirs.shape == ours.shape
    assert (theirs - ours).abs().max().item() < 1e-4
    record = json.loads((out / "gptlab_export.json").read_text())
    assert record["source"]["weights_hash"] == lm.info.weights_hash and record["tokenizer"] == "tokenizer.json"


@pytest.mark.parametrize("name", CASES)
def test_autotokenizer_gives_gptlabs_ids(exported, name):
    lm, out = exported[name]
    tok = transformers.AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    text = VAL[:3000]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == lm.tokenizer.encode(text)
    assert tok.decode(ids) == text
    if lm.tokenizer.bos_id is not None:
        assert tok.bos_token_id == lm.tokenizer.bos_id


def test_the_char_level_vocabulary_becomes_a_one_character_wordlevel(exported):
    _, out = exported["nanogpt_char"]
    spec = json.loads((out / "tokenizer.json").read_text())
    assert spec["model"]["type"] == "WordLevel" and spec["decoder"]["type"] == "Fuse"
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok.bos_token is None and len(tok) == 96
    config = json.loads((out / "config.json").read_text())
    assert config["bos_token_id"] is None and config["activation_function"] == "gelu"   # nanoGPT's exact GELU


@pytest.mark.parametrize("name", ["llmc_fp32", "nanochat", "gptlab"])
def test_greedy_generate_continues_as_gptlab_does(exported, name):
    lm, out = exported[name]
    model = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, dtype=torch.float32)
    prompt = "def main():\n    "
    engine = Engine(lm.model, lm.tokenizer, stop_ids=[])
    ours = engine.stream(prompt, 8, lambda _: None, temperature=0).tokens
    ids, _, _ = engine.fit(prompt, 8)
    x = torch.tensor([ids])
    got = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=8, do_sample=False,
                         pad_token_id=0)[0, len(ids):].tolist()
    assert got == ours


@pytest.mark.parametrize("name", ["llmc_fp32", "nanogpt_char", "nanochat", "gptlab"])
def test_gptlab_eval_of_the_folder_gives_the_originals_bpb(exported, name, tmp_path, capsys):
    lm, out = exported[name]
    text = tmp_path / "val.txt"
    text.write_text(VAL[:6000])
    got = {}
    for which, path in (("original", lm.info.path), ("export", out)):
        assert main(["eval", str(path), "--no-probes", "--bpb", f"val={text}", "--json",
                     "--db", str(tmp_path / "r.sqlite")]) == 0
        got[which] = [json.loads(line) for line in capsys.readouterr().out.splitlines()][-1]
    assert got["export"]["bpb"] == pytest.approx(got["original"]["bpb"], rel=1e-5)
    assert got["export"]["tokens"] == got["original"]["tokens"] and got["export"]["bytes"] == got["original"]["bytes"]
    assert load(discover(out)[0]).info.step == lm.info.step


def test_padding_masks_give_the_unpadded_logits(exported):
    """Left padding through attention_mask: the real positions' logits are those of the unpadded row."""
    for name in ("nanochat", "gptlab"):
        lm, out = exported[name]
        model = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
        ids = _ids(lm, 24)
        x = torch.tensor([[0] * 5 + ids])
        mask = torch.tensor([[0] * 5 + [1] * len(ids)])
        with torch.no_grad():
            padded = model(x, attention_mask=mask).logits[0, 5:]
            plain = lm.model(torch.tensor([ids]))[0]
        assert (padded - plain).abs().max().item() < 1e-4, name


def test_a_non_empty_folder_is_kept_unless_forced(tmp_path, capsys):
    src = str(CASES["hf_gpt2"][0])
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(["export", src, "--format", "hf", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "exists and is not empty" in err and "--force" in err and err.count("\n") == 1
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert main(["export", src, "--format", "hf", "--out", str(out), "--force"]) == 0
    assert not (out / "mine.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]          # no temporary folder left


@pytest.mark.parametrize("args, words", [
    (["--format", "onnx"], "--format 'onnx'"),
    (["--out", "FILE"], "exists and is not a folder"),
])
def test_bad_arguments_are_one_line(tmp_path, capsys, args, words):
    (tmp_path / "FILE").write_text("x")
    argv = ["export", str(CASES["hf_gpt2"][0]), "--out", str(tmp_path / "new")] + \
        [a.replace("FILE", str(tmp_path / "FILE")) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gptlab: error: ") and words in err and err.count("\n") == 1
    assert not (tmp_path / "new").exists()


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(hf_folder, "save_file", boom)
    with pytest.raises(GptlabError, match="no space left on device"):
        hf_folder.export_hf(str(CASES["llmc_fp32"][0]), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing"), "--format", "hf", "--out", str(tmp_path / "o")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
