"""Property-based fuzzing of config loading: whatever the TOML (random keys, types, values, nesting; random
bytes; mutations of a valid config) and whatever the `--set KEY=VALUE` overrides, `load_config` returns a
Config or raises GptlabError with a one-line message — never another exception.

    python -m pytest tests/test_fuzz_config.py          (deterministic: derandomize=True)
"""

import dataclasses
import datetime
import json
import tomllib

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TINY
from toml_writer import dump, toml_value
from gptlab.config import ModelConfig, TokenizerConfig, TrainConfig, load_config
from gptlab.errors import GptlabError

FUZZ = settings(derandomize=True, max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

BASE = tomllib.loads(TINY.read_text())
KNOWN_KEYS = sorted({k for table in BASE.values() if isinstance(table, dict) for k in table} |
                    {"name", "model", "tokenizer", "train", "data", "domains", "path", "weight", "group", "val",
                     "softcap", "rope_base", "n_kv_head", "adam_betas", "dtype", "compile", "threads", "seed"})

keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(min_size=0, max_size=12))
scalars = st.one_of(
    st.integers(min_value=-2**63, max_value=2**63 - 1), st.sampled_from([0, 1, -1, 2, 3, 64, 258, 512, 2**31]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=20),
    st.sampled_from(["auto", "float32", "bfloat16", "gptlab:corpus/web_en.val.jsonl", "*.jsonl", "~nobody/x",
                     "gptlab:corpus/*.val.jsonl", "", ".", "..", "a/b", "\x00", "x\ny"]),
    st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 1, 1)),
    st.dates(), st.times())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=4)), max_leaves=12)
# values a field might plausibly hold: they pass the type checks and reach the ranges and cross-checks
plausible = st.one_of(st.integers(-2, 70000), st.floats(-1.0, 2.0), st.sampled_from([0, 1, 2, 4, 32, 64, 512]),
                      st.lists(st.floats(-0.5, 1.5), min_size=1, max_size=3),
                      st.lists(st.sampled_from(["gptlab:corpus/web_en.val.jsonl", "gptlab:corpus/demo/*.jsonl",
                                                "gptlab:corpus/nothing*.jsonl", "x.jsonl", ""]), max_size=3))


def weighted(often, rarely, odds=6):
    """`often` odds times as likely as `rarely` (one_of would pick each about equally)."""
    return st.integers(0, odds).flatmap(lambda i: rarely if i == 0 else often)


def check_load(path, overrides=()):
    try:
        cfg = load_config(path, list(overrides))
    except GptlabError as e:
        msg = str(e)
        assert msg and "\n" not in msg and "\r" not in msg, repr(msg)
        return None
    assert cfg.data.domains
    return cfg


@st.composite
def mutated_configs(draw):
    """The tiny config with a few of its values replaced, removed or added: reaches the range checks."""
    doc = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, 3))):
        table = draw(st.sampled_from(["model", "tokenizer", "train", "domain", "top"]))
        if table == "domain":
            domains = doc.get("data", {}).get("domains") if isinstance(doc.get("data"), dict) else None
            if not isinstance(domains, list) or not domains:
                continue
            node = domains[draw(st.integers(0, len(domains) - 1))]
        elif table == "top":
            node = doc
        else:
            node = doc.setdefault(table, {})
        if not isinstance(node, dict):          # an earlier mutation replaced this table by a value
            continue
        existing = st.sampled_from(sorted(node) or ["x"])
        key = draw(weighted(existing, keys))
        action = draw(st.sampled_from(["set", "set", "set", "delete"]))
        if action == "delete":
            node.pop(key, None)
        else:
            node[key] = draw(weighted(plausible, values, odds=2))
    return doc


FIELD_KEYS = [f"{t}.{f.name}" for t, cls in (("model", ModelConfig), ("tokenizer", TokenizerConfig),
                                               ("train", TrainConfig)) for f in dataclasses.fields(cls)] + ["name"]
override_keys = st.one_of(st.sampled_from(FIELD_KEYS), st.sampled_from(FIELD_KEYS), st.sampled_from(
    [f"{t}.{k}" for t in ("model", "train", "tokenizer") for k in KNOWN_KEYS] +
    ["data", "data.domains", "train", "x.y.z", ".", "", "model..depth", " train.steps "]))
good_overrides = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(FIELD_KEYS),
                           st.one_of(plausible.map(toml_value), plausible.map(str)))
odd_overrides = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", override_keys, st.one_of(values.map(toml_value), st.text(max_size=15))),
    st.text(max_size=30))


override_items = weighted(good_overrides, odd_overrides)


@FUZZ
@given(doc=st.dictionaries(keys, values, max_size=6))
def test_random_toml_documents_load_or_fail_in_one_line(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("fuzz") / "c.toml"
    path.write_text(dump(doc), encoding="utf-8")
    check_load(path)


@FUZZ
@given(doc=mutated_configs(), overrides=st.lists(override_items, max_size=3))
def test_mutated_configs_and_overrides_load_or_fail_in_one_line(tmp_path_factory, doc, overrides):
    path = tmp_path_factory.mktemp("fuzz") / "c.toml"
    path.write_text(dump(doc), encoding="utf-8")        # tables inline: data = {domains = [{...}]}
    check_load(path, overrides)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                     st.sampled_from([b"", b"\xff\xfe", b"[model]\ndepth = 1\n[model]\n", b"a = 1\na = 2\n",
                                      b"[[data.domains]]\n", b"data.domains = 1\n"])))
def test_random_bytes_load_or_fail_in_one_line(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "c.toml"
    path.write_bytes(raw)
    check_load(path)


@FUZZ
@given(overrides=st.lists(override_items, min_size=1, max_size=4))
def test_random_overrides_of_the_tiny_config_load_or_fail_in_one_line(overrides):
    check_load(TINY, overrides)


@pytest.mark.parametrize("where", ["file", "override"])
def test_an_integer_of_thousands_of_digits_is_one_line(tmp_path, where):
    """tomllib raises ValueError, not TOMLDecodeError, for an integer over 4,300 digits."""
    huge = "9" * 5000
    if where == "file":
        path = tmp_path / "big.toml"
        path.write_text(f"a = {huge}\n")
        args, match = (path, ()), "invalid TOML"
    else:
        args, match = (TINY, (f"train.steps={huge}",)), "train.steps"
    with pytest.raises(GptlabError, match=match) as e:
        load_config(*args)
    assert "\n" not in str(e.value)
