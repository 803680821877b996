"""Build gptlab/diagnose/domain_anchors.json: one sentence-encoder centroid per corpus domain, for topic_drift.

    python tools/drift_anchors.py [--corpus gptlab/corpus] [--out gptlab/diagnose/domain_anchors.json]

A domain's anchor is the mean all-MiniLM-L6-v2 embedding, normalised, of up to WINDOWS evenly spaced
windows of LATE_WORDS words (figures removed, embedded as topic_drift embeds a tail) cut from the
domain's training documents (<domain>.train.jsonl). topic_drift reads a text as a domain when its nearest
anchor is at least DOMAIN_SIMILARITY similar (see its docstring). Deterministic; rerun after the
shipped corpus or the encoder changes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gptlab.diagnose import topic_drift as drift
from gptlab.diagnose.minilm import encoder, unavailable_reason

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("code_python", "code_go", "code_javascript", "code_sql", "code_java", "web_en", "finance_sec")
WINDOWS = 300


def windows(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        words = json.loads(line)["text"].split()
        n = drift.LATE_WORDS
        out += [" ".join(words[i:i + n]) for i in range(0, max(1, len(words) - n + 1), n)]
    return out[::max(1, len(out) // WINDOWS)][:WINDOWS]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=ROOT / "gptlab" / "corpus")
    ap.add_argument("--out", type=Path, default=drift.ANCHORS)
    args = ap.parse_args()
    model = encoder()
    if model is None:
        raise SystemExit(f"no encoder: {unavailable_reason()}")
    anchors = {}
    for name in DOMAINS:
        texts = [drift._topic_text(t) for t in windows(args.corpus / f"{name}.train.jsonl")]
        mean = model.embed(texts, max_tokens=drift.LATE_TOKENS).mean(axis=0)
        anchors[name] = [round(float(x), 5) for x in mean / np.linalg.norm(mean)]
        print(f"{name}: {len(texts)} windows")
    meta = {"encoder": "all-MiniLM-L6-v2", "windows": WINDOWS, "words": drift.LATE_WORDS,
            "corpus": "gptlab/corpus/<domain>.train.jsonl", "made_by": "tools/drift_anchors.py"}
    args.out.write_text(json.dumps({**meta, "anchors": anchors}) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
