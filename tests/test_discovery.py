"""One discovery for every command: `gptlab models DIR` and `gptlab eval DIR` find the same checkpoints, also
when DIR only holds them in subfolders; an unreadable folder does not hide the others beside it."""

import shutil
from pathlib import Path

import pytest

from gptlab.checkpoints import discover
from gptlab.checkpoints.listing import list_checkpoints
from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.store import Store

PEERS = Path(__file__).parent / "fixtures" / "peers"
NANOCHAT = PEERS / "nanochat" / "base_dir" / "base_checkpoints"


@pytest.mark.parametrize("where", ["nanochat/base_dir", "nanochat"])     # the base dir, and a folder above it
def test_eval_and_models_agree(where, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("def square(x):\n    return x * x\n")
    infos, errors = list_checkpoints(PEERS / where)
    assert not errors and {i.run for i in infos} == {"d2", "d2_bf16"}
    db = tmp_path / "r.sqlite"
    assert main(["eval", str(PEERS / where), "--no-probes", "--bpb", f"t={text}", "--db", str(db)]) == 0
    store = Store(db)
    try:
        evaluated = {str(Path(m["path"]).resolve()) for m in store.models()}
    finally:
        store.close()
    assert evaluated == {str(Path(i.path).resolve()) for i in infos}
    assert "2 checkpoints" in capsys.readouterr().err


def test_a_folder_of_peers_finds_every_format():
    refs = discover(PEERS)
    assert sorted({r.format for r in refs}) == ["hf", "llmc", "nanochat", "nanogpt"] and len(refs) == 7
    assert [r.label for r in discover(PEERS / "nanochat")] == ["d2@60", "d2_bf16@60"]


def test_an_unreadable_folder_is_passed_over_unless_it_is_all_there_is(tmp_path):
    good, bad = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    shutil.copytree(NANOCHAT / "d2", good / "base_checkpoints" / "d2")
    bad.mkdir(parents=True)
    ckpt = (PEERS / "nanogpt" / "out-pystdlib-char" / "ckpt.pt").read_bytes()
    (bad / "ckpt.pt").write_bytes(ckpt[:200_000])                                  # a truncated nanoGPT save
    assert [r.path for r in discover(tmp_path)] == [good / "base_checkpoints" / "d2" / "model_000060.pt"]
    shutil.rmtree(good)
    with pytest.raises(GptlabError, match="ckpt.pt: cannot read weights"):
        discover(tmp_path)


def test_nothing_found_names_the_subfolders_too(tmp_path):
    (tmp_path / "sub").mkdir()
    with pytest.raises(GptlabError, match="no checkpoint found here or in its subfolders"):
        discover(tmp_path)
