"""Loads the JSON data of the tiny lm-eval tasks beside it (tests/test_benchmarks*.py), offline.

    TaskManager(include_path="tests/data/lmeval")      each YAML names its file: custom_dataset: !function data.load

A YAML's `dataset_kwargs: {file: NAME.json}` reaches `load`; the file holds {"split": [doc, ...]}. Paths are
relative to this folder, so the tasks work from any working directory, and nothing is downloaded or cached.
"""

import json
from pathlib import Path

import datasets

HERE = Path(__file__).parent


def load(file: str, **_metadata) -> datasets.DatasetDict:
    splits = json.loads((HERE / file).read_text(encoding="utf-8"))
    return datasets.DatasetDict({name: datasets.Dataset.from_list(docs) for name, docs in splits.items()})
