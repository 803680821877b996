"""Config loading: every field's type and range checked in one place (gptlab/config.py), one-line errors
naming the file and the key, and globs in data paths.

    python -m pytest tests/test_config.py
"""

import contextlib
import dataclasses
import io
import json
import math

import pytest

from conftest import ROOT, TINY
from gptlab import cli
from gptlab.config import PRESETS_DIR, Config, DataConfig, DomainConfig, LadderConfig, LoggingConfig, ModelConfig, \
    TokenizerConfig, TrainConfig, load_config
from gptlab.errors import GptlabError

TABLES = {"model": ModelConfig, "tokenizer": TokenizerConfig, "train": TrainConfig, "logging": LoggingConfig}


def gptlab_here(*args):
    """`gptlab ARGS` in this process: (exit status, what it said on stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in args])
    return rc, err.getvalue()


def one_line_error(fn, *args):
    with pytest.raises(GptlabError) as e:
        fn(*args)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def _domains_config(tmp_path, domains: str) -> str:
    p = tmp_path / "c.toml"
    p.write_text(TINY.read_text().split("[[data.domains]]")[0] + domains)
    return p


@pytest.mark.parametrize("override, expect", [
    ("model.sequence_len=0", "model.sequence_len must be at least 1, got 0"),
    ("train.device_batch_size=0", "train.device_batch_size must be at least 1, got 0"),
    ("model.head_dim=0", "model.head_dim must be at least 2, got 0"),
    ("model.head_dim=3", "model.head_dim must be even"),
    ("train.log_every=0", "train.log_every must be at least 1, got 0"),
    ("train.adam_betas=5", "train.adam_betas must be a list of two numbers"),
    ("train.adam_betas=[0.9, 1.5]", "train.adam_betas[1] must be"),
    ("train.adam_betas=[0.9]", "train.adam_betas must be a list of two numbers"),
    ("model.vocab_size=-5", "model.vocab_size must be at least"),
    ("model.vocab_size=100", "model.vocab_size must be at least 258"),
    ("tokenizer.train_chars=0", "tokenizer.train_chars must be at least 1, got 0"),
    ("train.warmdown_frac=1.5", "train.warmdown_frac must be at most 1"),
    ("train.matrix_lr=nan", "train.matrix_lr must be a finite number"),
    ("train.grad_clip=inf", "train.grad_clip must be a finite number"),
    ("train.seed=-1", "train.seed must be at least 0"),
    ("model.n_kv_head=4", "n_kv_head 4"),
    ("train.steps=true", "train.steps must be int"),
    ("name=''", "name must not be empty"),
])
def test_out_of_range_values_name_the_file_and_key(override, expect):
    msg = one_line_error(load_config, TINY, [override])
    assert expect in msg and str(TINY) in msg, msg


def test_every_field_checks_its_type_and_range():
    """For every field of every table: a value of the wrong type and (for numbers) a negative or non-finite one
    is refused naming the key; so no field goes unchecked."""
    for table, cls in TABLES.items():
        for f in dataclasses.fields(cls):
            wrong = "1" if f.type in ("int", "float", "bool", "tuple[float, float]") else 5
            msg = one_line_error(load_config, TINY, [f"{table}.{f.name}={wrong!r}" if wrong == "1" else
                                                     f"{table}.{f.name}={wrong}"])
            assert f"{table}.{f.name}" in msg, msg
            if f.type in ("int", "float"):
                msg = one_line_error(load_config, TINY, [f"{table}.{f.name}=-1"])
                assert f"{table}.{f.name}" in msg, msg
            if f.type == "float":
                for bad in ("nan", "inf"):
                    msg = one_line_error(load_config, TINY, [f"{table}.{f.name}={bad}"])
                    assert f"{table}.{f.name} must be a finite number" in msg, msg


@pytest.mark.parametrize("domains, expect", [
    ('[[data.domains]]\nname = "a"\ntrain = [1, 2]\n', "'a': train[0] must be a string"),
    ('[[data.domains]]\nname = "a"\ntrain = "x.jsonl"\n', "'a': train must be a list"),
    ('[[data.domains]]\nname = "a"\nweight = 0\ntrain = ["gptlab:corpus/web_en.val.jsonl"]\n'
     '[[data.domains]]\nname = "b"\nweight = 0.0\ntrain = ["gptlab:corpus/web_en.val.jsonl"]\n',
     "every domain's weight is 0"),
    ('[[data.domains]]\nname = "a/b"\ntrain = ["gptlab:corpus/web_en.val.jsonl"]\n', "name must not contain"),
    ('[[data.domains]]\nname = ""\ntrain = ["gptlab:corpus/web_en.val.jsonl"]\n', "name must not be empty"),
    ('[[data.domains]]\nname = "a"\nweight = nan\ntrain = ["gptlab:corpus/web_en.val.jsonl"]\n',
     "weight must be a finite number"),
    ('[[data.domains]]\ntrain = ["gptlab:corpus/web_en.val.jsonl"]\n', "missing"),
])
def test_bad_domains_name_the_file_and_domain(tmp_path, domains, expect):
    cfg = _domains_config(tmp_path, domains)
    msg = one_line_error(load_config, cfg)
    assert expect in msg and str(cfg) in msg, msg


def test_a_table_of_the_wrong_type_is_named():
    assert "[data]: expected a table, got int" in one_line_error(load_config, TINY, ["data=5"])
    assert "'domains' must be a list" in one_line_error(load_config, TINY, ["data.domains=5"])
    assert "[[data.domains]] #1: expected a table, got int" in one_line_error(load_config, TINY,
                                                                              ["data.domains=[5]"])


def test_log_every_zero_fails_before_writing_anything(tmp_path):
    out = tmp_path / "run"
    rc, err = gptlab_here("train", TINY, "--out", out, "--set", "train.log_every=0")
    err = err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "train.log_every" in err, err
    assert not (out / "run.json").exists() and not (out / "metrics.jsonl").exists()


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESETS_DIR.glob("*.toml")))
def test_presets_and_shipped_configs_pass_validation(preset):
    assert load_config(preset).name == preset


def test_shipped_example_configs_pass_validation():
    for p in sorted((ROOT / "configs").glob("*.toml")):
        load_config(p)


def test_globs_expand_sorted_relative_to_the_config_file(tmp_path):
    data = tmp_path / "data" / "py"
    data.mkdir(parents=True)
    for name in ("b.jsonl", "a.jsonl", "c.txt"):
        (data / name).write_text('{"text": "x"}\n')
    cfg = _domains_config(tmp_path, '[[data.domains]]\nname = "py"\ntrain = ["data/py/*.jsonl"]\n'
                                    'val = ["data/py/c.txt", "gptlab:corpus/demo/*.val.jsonl"]\n')
    loaded = load_config(cfg)
    assert loaded.data.domains[0].train == [str(data / "a.jsonl"), str(data / "b.jsonl")]
    val = loaded.data.domains[0].val
    assert val[0] == str(data / "c.txt") and len(val) == 8 and val[1:] == sorted(val[1:])
    assert all(v.endswith(".val.jsonl") for v in val[1:])


def test_a_glob_that_matches_nothing_names_the_pattern(tmp_path):
    cfg = _domains_config(tmp_path, '[[data.domains]]\nname = "py"\ntrain = ["data/nothing/*.parquet"]\n')
    msg = one_line_error(load_config, cfg)
    assert "data/nothing/*.parquet" in msg and "matches no file" in msg and str(cfg) in msg, msg


def test_the_readme_config_example_trains_through_its_glob(tmp_path):
    """README's `train = ["data/py/*.parquet"]`: the glob reaches the trainer as sorted files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gptlab.data import iter_documents
    texts = [json.loads(d)["text"] for d in (ROOT / "gptlab/corpus/code_python.val.jsonl").read_text().splitlines()]
    (tmp_path / "data" / "py").mkdir(parents=True)
    half = len(texts) // 2
    pq.write_table(pa.table({"text": texts[:half]}), tmp_path / "data/py/shard_000.parquet")
    pq.write_table(pa.table({"text": texts[half:]}), tmp_path / "data/py/shard_001.parquet")
    cfg = _domains_config(tmp_path, '[[data.domains]]\nname = "code_python"\ntrain = ["data/py/*.parquet"]\n'
                                    'val = ["gptlab:corpus/code_python.val.jsonl"]\n')
    out = tmp_path / "run"
    rc, err = gptlab_here("train", cfg, "--out", out, "--set", "train.steps=2", "--set", "train.save_every=2",
                          "--set", "train.eval_every=2")
    assert rc == 0, err
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["domains"][0]["train"] == [str(tmp_path / "data/py/shard_000.parquet"),
                                                  str(tmp_path / "data/py/shard_001.parquet")]
    loaded = load_config(cfg)
    assert [d for p in loaded.data.domains[0].train for d in iter_documents(p)] == texts


def test_override_paths_and_values_are_checked_like_the_file():
    msg = one_line_error(load_config, TINY, ["train.steps"])
    assert "KEY=VALUE" in msg
    msg = one_line_error(load_config, TINY, ["name.x=1"])
    assert "'name' is not a table" in msg
    msg = one_line_error(load_config, TINY, ['train.dtype="float16"'])
    assert "train.dtype must be" in msg
    assert math.isclose(load_config(TINY, ["train.warmdown_frac=0.5"]).train.warmdown_frac, 0.5)


def test_config_dataclasses_are_all_covered_by_the_rules():
    from gptlab.config_rules import RULES
    for cls, table in ((ModelConfig, "model"), (TokenizerConfig, "tokenizer"), (TrainConfig, "train"),
                       (DomainConfig, "domain"), (LoggingConfig, "logging"), (LadderConfig, "ladder"), (Config, "")):
        for f in dataclasses.fields(cls):
            if f.name in ("source", "model", "tokenizer", "data", "train", "domains", "logging", "ladder"):
                continue
            assert (table, f.name) in RULES, (table, f.name)
    assert DataConfig  # its one field (domains) is checked structurally
