"""A word_salad signal measured and not adopted: a linear probe on the MiniLM windows that topic_drift embeds.

    python bench/word_salad_probe.py [--corpus DIR (default: gptlab/corpus)] [--larger DIR] [--n 600]

Word salad (real words strung without sense) has no detector (docs/failure_modes.md). This measures whether the
sentence encoder already loaded for topic_drift can tell it from human prose, at no extra encoder cost: each
prose completion's first and last window (topic_drift's `early` and `late`) is embedded, a logistic regression
scores each window, and the sample's score is the mean of the two.

* Positives for training: "salad" sampled from word-bigram and word-trigram models of a corpus's prose (words
  associated by surface co-occurrence, the seeds' description). Negatives: human continuations (30 words of
  prompt, 80-160 words of continuation: bench/diagnose_calibrate.py's pairs).
* Two training corpora, split by document (even documents train, odd ones calibrate): the shipped slice the
  real set's gptlab models were trained on, and, with --larger, the corpus it was cut from.
* The threshold is the 99th percentile of the held-out human scores (1% false alarms, the worse domain).
* Printed: AUC of the real set's word_salad samples against held-out human text, recall at the threshold
  (all salad, and salad the readers did not also call invented_words), the real set's non-salad prose
  flagged, and the false-alarm rate on the other corpus's human text.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from diagnose_calibrate import documents, prose_pairs  # bench/ is not a package
from diagnose_real_split import REAL
from drift_loss_signal import auc

from gptlab.diagnose import topic_drift as drift
from gptlab.diagnose.minilm import encoder

ROOT = Path(__file__).resolve().parents[1]
PROSE = ("web_en", "finance_sec")


def continuations(docs, n, rnd) -> list[tuple[str, str]]:
    """(prompt, human continuation): bench/diagnose_calibrate.py's pairs without the other document's passage."""
    return [(prompt, completion) for prompt, completion, _ in prose_pairs(docs, n, rnd)]


def ngram_salad(docs, n, order, rnd) -> list[tuple[str, str]]:
    follow = defaultdict(Counter)
    for d in docs:
        w = d.split()
        for i in range(len(w) - order + 1):
            follow[tuple(w[i:i + order - 1])][w[i + order - 1]] += 1
    starts, out = list(follow), []
    for _ in range(n):
        text = list(rnd.choice(starts))
        while len(text) < 190:
            nxt = follow.get(tuple(text[-(order - 1):]))
            if not nxt:
                text += rnd.choice(starts)
                continue
            words, counts = zip(*nxt.items())
            text.append(rnd.choices(words, counts)[0])
        out.append((" ".join(text[:30]), " " + " ".join(text[30:30 + rnd.choice((80, 120, 160))])))
    return out


class Windows:
    """Each pair's (early, late) embeddings, as topic_drift embeds them; pairs it does not judge are dropped."""

    def __init__(self):
        self.model, self.cache = encoder(), {}

    def __call__(self, pairs) -> tuple[np.ndarray, np.ndarray, list[int]]:
        wins = [drift.windows(p, c) for p, c in pairs]
        keep = [i for i, w in enumerate(wins) if not isinstance(w, str)]
        texts = [drift._topic_text(t) for i in keep for t in (wins[i].early, wins[i].late)]
        todo = sorted(set(texts) - set(self.cache))
        self.cache.update(zip(todo, map(np.asarray, self.model.embed(todo, max_tokens=drift.LATE_TOKENS))))
        vec = np.stack([self.cache[t] for t in texts])
        return vec[0::2], vec[1::2], keep


def fit(pos: np.ndarray, neg: np.ndarray, decay: float):
    x = torch.tensor(np.concatenate([pos, neg]), dtype=torch.float32)
    y = torch.tensor([1.0] * len(pos) + [0.0] * len(neg))
    w, b = torch.zeros(x.shape[1], requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=1000)

    def loss():
        opt.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + decay * (w * w).sum()
        value.backward()
        return value
    opt.step(loss)
    w, b = w.detach().numpy(), float(b.detach())
    return lambda early, late: ((early @ w + b) + (late @ w + b)) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=ROOT / "gptlab" / "corpus")
    ap.add_argument("--larger", type=Path, help="the corpus the shipped slice was cut from (../shared/corpus)")
    ap.add_argument("--n", type=int, default=600, help="human continuations per domain and half")
    ap.add_argument("--decay", type=float, default=1e-4)
    args = ap.parse_args()
    rnd, embed = random.Random(0), Windows()
    real = [json.loads(line) for line in REAL.open(encoding="utf-8")]
    real = [r for r in real if not r.get("language")]
    r_early, r_late, keep = embed([(r["prompt"], r["completion"]) for r in real])
    salad = np.array(["word_salad" in real[i]["labels"] for i in keep])
    coined = np.array(["invented_words" in real[i]["labels"] for i in keep])
    corpora = {"shipped": args.corpus} | ({"larger": args.larger} if args.larger else {})
    docs = {(name, d): documents(path, d) for name, path in corpora.items() for d in PROSE}
    # corpus -> domain -> held-out human (early, late): the odd documents
    held = {name: {d: embed(continuations(docs[name, d][1::2], args.n, rnd))[:2] for d in PROSE} for name in corpora}
    for name, path in corpora.items():
        pos, neg = [], []
        for d in PROSE:
            train = docs[name, d][0::2]
            for order in (2, 3):
                e, l, _ = embed(ngram_salad(train, args.n // 2, order, rnd))
                pos += [e, l]
            e, l, _ = embed(continuations(train, args.n, rnd))
            neg += [e, l]
        score = fit(np.concatenate(pos), np.concatenate(neg), args.decay)
        human = {d: score(*held[name][d]) for d in PROSE}
        threshold = max(float(np.quantile(v, 0.99)) for v in human.values())
        r = score(r_early, r_late)
        print(f"\n== trained on {name} ({path}), threshold {threshold:.2f} (1% of its held-out human text)")
        negatives = np.concatenate(list(human.values()))
        separation = auc([*r[salad], *negatives], [True] * int(salad.sum()) + [False] * len(negatives))
        print(f"real set: AUC {separation:.3f}; recall "
              f"{np.mean(r[salad] > threshold):.2f} of {salad.sum()} salad, {np.mean(r[salad & ~coined] > threshold):.2f}"
              f" of the {(salad & ~coined).sum()} not also invented_words; non-salad prose flagged "
              f"{int(np.sum(r[~salad] > threshold))} of {(~salad).sum()}")
        for other in corpora:
            if other != name:
                fa = {d: float(np.mean(score(*held[other][d]) > threshold)) for d in PROSE}
                print(f"false alarms on {other} human text: " + ", ".join(f"{d} {v:.1%}" for d, v in fa.items()))


if __name__ == "__main__":
    main()
