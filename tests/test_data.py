"""Corpora in every supported format, and the deterministic mixture batches."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gptlab.data import BatchSampler, DomainData, iter_documents
from gptlab.errors import GptlabError


def test_txt_jsonl_and_parquet_give_the_same_documents(tmp_path):
    docs = ["first document\nwith two lines", "second — ünïcode", "third"]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": d, "source": "x"}) + "\n" for d in docs))
    pq.write_table(pa.table({"text": docs, "id": [1, 2, 3]}), tmp_path / "a.parquet", row_group_size=2)
    (tmp_path / "a.txt").write_text(docs[0])
    assert list(iter_documents(tmp_path / "a.jsonl")) == docs
    assert list(iter_documents(tmp_path / "a.parquet")) == docs
    assert list(iter_documents(tmp_path / "a.txt")) == [docs[0]]


def test_parquet_without_text_column_is_named(tmp_path):
    pq.write_table(pa.table({"content": ["x"]}), tmp_path / "b.parquet")
    with pytest.raises(GptlabError, match="no 'text' column"):
        list(iter_documents(tmp_path / "b.parquet"))


def test_batches_depend_only_on_seed_and_step_and_ranks_split_the_global_batch():
    rng = np.random.default_rng(0)
    domains = [DomainData("a", 1.0, rng.integers(0, 100, 5000).astype(np.uint16), None),
               DomainData("b", 3.0, rng.integers(100, 200, 5000).astype(np.uint16), None)]
    one = BatchSampler(domains, 16, rows_per_micro=4, micro_steps=2, seed=7)
    again = BatchSampler(domains, 16, rows_per_micro=4, micro_steps=2, seed=7)
    np.testing.assert_array_equal(one.batch(5, 1)[0], again.batch(5, 1)[0])
    assert not np.array_equal(one.batch(5, 1)[0], one.batch(6, 1)[0])
    x, y = one.batch(3, 0)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    # two ranks with half the rows each see exactly the rows of the single-process batch
    ranks = [BatchSampler(domains, 16, 2, 2, seed=7, rank=r, world=2) for r in (0, 1)]
    single = np.concatenate([one.batch(3, m)[0] for m in range(2)])
    split = np.concatenate([ranks[r].batch(3, m)[0] for m in range(2) for r in range(2)])
    np.testing.assert_array_equal(np.sort(single, axis=0), np.sort(split, axis=0))
    # mixture weights are respected over many rows (b has 3x the weight of a)
    rows = np.concatenate([one.batch(s, 0)[0][:, 0] for s in range(300)])
    assert 0.68 < (rows >= 100).mean() < 0.82
