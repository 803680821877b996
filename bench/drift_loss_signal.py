"""topic_drift with no encoder: how much the prompt lowers the completion's loss under the model that wrote it.

    python bench/drift_loss_signal.py gptlab-d4=runs/real_d4/checkpoints/step_000300 \\
        nanochat-d2=../shared/peers/nanochat/base_dir/base_checkpoints/d2 llmc-tiny=../shared/peers/llmc/gpt2_tiny.bin \\
        nanogpt-char=../shared/peers/nanogpt/out-pystdlib-char hf-gpt2-200steps=../shared/peers/hf_gpt2/trained_200steps \\
        [--json out.json] [--human /work/shared/corpus --n 100]

Each NAME=CHECKPOINT (one checkpoint: a step folder, not a run) scores the prose samples (no `language`) of
tests/data/diagnose_real.jsonl whose `model` is NAME and whose `step` is the checkpoint's step. The prompt is
encoded as `gptlab eval` encoded it when sampling (Engine.fit: BOS, cropped to the context), the completion
is re-encoded with the model's own tokenizer, cut to max_tokens, and split into a head (its first half of
tokens) and a tail.
Three gains, in bits per byte of the scored text (bpb without the prompt minus bpb with it; a text that
follows from its prompt gains, a drifted tail should gain ~nothing), fixed before any sample was scored:
* tail_vs_none:  the tail given BOS + head, against the tail given BOS + prompt + head;
* tail_vs_other: the tail given BOS + another domain's prompt + head (the mean over the set's prose prompts
  of the other domain, general <-> finance), against the tail given BOS + prompt + head;
* whole_vs_none: the whole completion given BOS only, against given BOS + prompt (the first token is context
  when the tokenizer has no BOS).
A fourth was added after those three had been scored (post hoc: the head carries the topic, so the prompt
adds little to the tail in them, drift or not):
* tail_alone:    the tail given BOS only, against the tail given BOS + prompt, the head left out (as MiniLM
  compares the prompt with the tail alone).
The drift score is minus the gain; MiniLM's is minus drift_similarity (gptlab.diagnose.topic_drift), which
exists only for completions of >= 40 words. Prints, per checkpoint and pooled, positives and the ROC-AUC of
each score for the `topic_drift` label (on all prose samples, and on those MiniLM judges), then precision /
recall at the threshold with the best F1 on the tuning-half checkpoints given (bench/diagnose_real_split.py),
applied to the held-out ones (where MiniLM has not judged a sample it counts as "no drift"), and the time per
sample. Measurement only: nothing here is part of `gptlab diagnose`.

`--human CORPUS` also scores human text under each checkpoint, as bench/diagnose_calibrate.py builds it (a
30-word prompt, the document's next 80-160 words), from the documents of CORPUS's web_en and finance_sec that
the shipped train split (what configs/real_samples_*.toml train on) does not hold: the human continuation
against the same continuation whose second half is replaced by a passage of another document (a drift), AUC
per gain and for MiniLM. Only meaningful for checkpoints trained on that prose (the gptlab ones).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diagnose_calibrate import documents, prose_pairs  # bench/ is not a package
from diagnose_real_split import REAL, half

from gptlab.checkpoints import discover, load
from gptlab.diagnose.topic_drift import DRIFT_SIMILARITY, similarities, windows
from gptlab.engine import Engine

VARIANTS = ("tail_vs_none", "tail_vs_other", "whole_vs_none", "tail_alone")
SHIPPED = Path(__file__).resolve().parents[1] / "gptlab" / "corpus"
HUMAN_DOMAINS = {"web_en": "general", "finance_sec": "finance"}     # corpus domain -> the real set's domain


class Scorer:
    """Bits per byte of a target token run after a context, under one loaded checkpoint."""

    def __init__(self, loaded):
        self.model, self.tok = loaded.model, loaded.tokenizer
        self.engine = Engine(self.model, self.tok)
        self.bos = [self.tok.bos_id] if self.tok.bos_id is not None else []
        self.vocab = self.engine.vocab

    def prompt_ids(self, prompt: str, max_tokens: int) -> list[int]:
        return self.engine.fit(prompt, max_tokens)[0]          # BOS + prompt, cropped as when sampled

    @torch.no_grad()
    def bpb(self, context: list[int], target: list[int]) -> float:
        ids = context + target
        over = len(ids) - self.engine.context
        if over > 0:                                            # crop from the left, after BOS
            ids = ids[:len(self.bos)] + ids[len(self.bos) + over:]
        logits = self.model(torch.tensor([ids]))[0, -len(target) - 1:-1, :self.vocab].float()
        nats = torch.nn.functional.cross_entropy(logits, torch.tensor(target), reduction="sum").item()
        return nats / math.log(2) / max(1, len(self.tok.decode(target).encode("utf-8")))


def gains(s: Scorer, row: dict, others: list[str]) -> dict:
    """The four gains of one sample (see the module docstring)."""
    prompt = s.prompt_ids(row["prompt"], row["max_tokens"])
    comp = s.tok.encode(row["completion"])[:min(row["max_tokens"], s.engine.context - len(s.bos) - 1)]
    cut = max(1, len(comp) // 2)
    head, tail = comp[:cut], comp[cut:] or comp[-1:]
    with_prompt = s.bpb(prompt + head, tail)
    other = [s.bpb(s.prompt_ids(p, row["max_tokens"]) + head, tail) for p in others]
    first = 0 if s.bos else 1                                   # no BOS: the first token is context
    return {"tail_vs_none": s.bpb(s.bos + head, tail) - with_prompt,
            "tail_vs_other": sum(other) / len(other) - with_prompt,
            "whole_vs_none": s.bpb(s.bos + comp[:first], comp[first:]) - s.bpb(prompt + comp[:first], comp[first:]),
            "tail_alone": s.bpb(s.bos + tail[:first], tail[first:]) - s.bpb(prompt + tail[:first], tail[first:])}


def human_pairs(corpus: Path, n: int, seed: int = 0) -> list[tuple[str, dict, dict]]:
    """(real-set domain, human sample, the same with another document's tail) for n pairs per prose domain
    of `corpus`, from documents the shipped train split does not hold."""
    rnd, out = random.Random(seed), []
    for name, domain in HUMAN_DOMAINS.items():
        seen = {json.loads(line)["text"] for line in (SHIPPED / f"{name}.train.jsonl").open(encoding="utf-8")}
        for prompt, cont, other in prose_pairs([d for d in documents(corpus, name) if d not in seen], n, rnd):
            words, foreign = cont.split(), other.split()
            spliced = " " + " ".join(words[:len(words) // 2] + foreign[len(words) // 2:])
            out.append((domain, {"prompt": prompt, "completion": cont, "max_tokens": 200},
                        {"prompt": prompt, "completion": spliced, "max_tokens": 200}))
    return out


def human_check(s: Scorer, label: str, pairs, prompts: dict) -> None:
    """Print the AUC, human continuation against spliced drift, of each gain and of MiniLM."""
    samples = [(d, x) for d, human, spliced in pairs for x in (human, spliced)]
    drift = [i % 2 == 1 for i in range(len(samples))]
    t0 = time.perf_counter()
    got = [gains(s, x, sorted(p for dd, ps in prompts.items() if dd != d for p in ps)) for d, x in samples]
    took = (time.perf_counter() - t0) / len(samples)
    sims = similarities([(x["prompt"], x["completion"]) for _, x in samples])
    cells = [f"{v} {fmt(auc([-g[v] for g in got], drift))} (median gain human "
             f"{statistics.median(g[v] for g, y in zip(got, drift) if not y):+.3f}, spliced "
             f"{statistics.median(g[v] for g, y in zip(got, drift) if y):+.3f} bpb)" for v in VARIANTS]
    cells.append(f"minilm {fmt(auc([-x for x in sims], drift))}")
    print(f"{label}: {len(pairs)} human continuations against the same with another document's tail; AUC "
          + "; ".join(cells) + f"; {took:.3f} s per sample")


def auc(scores: list[float], labels: list[bool]) -> float | None:
    """ROC-AUC of `scores` (higher = positive), ties counted half; None without both classes."""
    pos = [x for x, y in zip(scores, labels) if y]
    neg = [x for x, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def pr(scores: list[float | None], labels: list[bool], threshold: float) -> tuple[float | None, float | None, int]:
    """(precision, recall, flagged) when score >= threshold flags drift; a None score is never flagged."""
    flag = [x is not None and x >= threshold for x in scores]
    tp = sum(f and y for f, y in zip(flag, labels))
    return (tp / sum(flag) if any(flag) else None), (tp / sum(labels) if any(labels) else None), sum(flag)


def best_threshold(scores: list[float | None], labels: list[bool]) -> float:
    """The flagging threshold with the best F1 on these samples (the midpoint between two adjacent scores)."""
    xs = sorted({x for x in scores if x is not None})
    cands = [(a + b) / 2 for a, b in itertools.pairwise(xs)] + [xs[0] - 1e-9]

    def f1(t):
        p, r, _ = pr(scores, labels, t)
        return 0.0 if not p or not r else 2 * p * r / (p + r)
    return max(cands, key=f1)


def fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", metavar="NAME=CHECKPOINT")
    ap.add_argument("--json", type=Path, help="write every sample's scores here")
    ap.add_argument("--human", type=Path, metavar="CORPUS", help="also score human text from this corpus")
    ap.add_argument("--n", type=int, default=100, help="human pairs per prose domain (default 100)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [json.loads(line) for line in REAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    prose = [r for r in rows if not r.get("language")]
    prompts = {}                                                # domain -> its distinct prompts
    for r in prose:
        prompts.setdefault(r["domain"], set()).add(r["prompt"])
    scored, timing, human = [], {}, []
    pairs = human_pairs(args.human, args.n) if args.human else []
    for spec in args.checkpoints:
        name, _, path = spec.partition("=")
        refs = discover(path)
        if len(refs) != 1:
            sys.exit(f"{path}: {len(refs)} checkpoints; name one")
        s = Scorer(load(refs[0]))
        mine = [r for r in prose if r["model"] == name and r["step"] == refs[0].step]
        if not mine:
            sys.exit(f"{spec}: no prose sample of model {name} at step {refs[0].step}")
        t0 = time.perf_counter()
        for r in mine:
            others = sorted(p for d, ps in prompts.items() if d != r["domain"] for p in ps)
            scored.append({"id": r["id"], "ckpt": f"{name}@{r['step']}", "half": half(r), "max_tokens": r["max_tokens"],
                           "drift": "topic_drift" in r["labels"],
                           "judged": not isinstance(windows(r["prompt"], r["completion"]), str),
                           **gains(s, r, others)})
        timing[f"{name}@{refs[0].step}"] = (time.perf_counter() - t0) / len(mine)
        if pairs:
            human.append((s, f"{name}@{refs[0].step}"))
    t0 = time.perf_counter()
    by_id = {r["id"]: r for r in prose}
    sims = similarities([(by_id[x["id"]]["prompt"], by_id[x["id"]]["completion"]) for x in scored])
    minilm_s = (time.perf_counter() - t0) / len(scored)
    for x, sim in zip(scored, sims):
        x["minilm_similarity"] = sim

    def score(x, v, gated=True):
        """Drift score, higher = more drift; None where MiniLM does not judge (when `gated`; MiniLM always is).
        Ungated, MiniLM's unjudged samples score lowest: the detector calls them no drift."""
        if v == "minilm":
            return -x["minilm_similarity"] if x["minilm_similarity"] is not None else (None if gated else -math.inf)
        return -x[v] if x["judged"] or not gated else None
    names = (*VARIANTS, "minilm")
    groups = {c: [x for x in scored if x["ckpt"] == c] for c in dict.fromkeys(x["ckpt"] for x in scored)}
    for h in ("tuning", "heldout"):
        groups[f"pooled {h}"] = [x for x in scored if x["half"] == h]
        for n in (80, 200):         # the gains shrink with the completion's length: each length alone
            groups[f"pooled {h}, {n} tokens"] = [x for x in groups[f"pooled {h}"] if x["max_tokens"] == n]
    groups["pooled all"] = scored
    print("ROC-AUC for topic_drift: all prose samples | only those MiniLM judges (>= 40 words)")
    print(f"{'checkpoint':<26} {'n':>3} {'pos':>3} {'judged':>6} {'pos':>3}  " +
          "  ".join(f"{v:>13}" for v in names))
    for g, xs in groups.items():
        judged = [x for x in xs if x["judged"]]
        cells = []
        for v in names:
            a = auc([score(x, v, gated=False) for x in xs], [x["drift"] for x in xs])
            b = auc([score(x, v) for x in judged], [x["drift"] for x in judged])
            cells.append(f"{fmt(a):>5} | {fmt(b):>5}")
        print(f"{g:<26} {len(xs):>3} {sum(x['drift'] for x in xs):>3} {len(judged):>6} "
              f"{sum(x['drift'] for x in judged):>3}  " + "  ".join(f"{c:>13}" for c in cells))
    tune, held = groups["pooled tuning"], groups["pooled heldout"]
    if tune and held:
        print("\nthreshold with the best F1 on the tuning checkpoints, applied to the held-out ones "
              "(precision / recall, flagged); gated: only samples MiniLM judges (>= 40 words) can be flagged")
        for v, gated in [(v, g) for v in VARIANTS for g in (False, True)] + [("minilm", True)]:
            t = best_threshold([score(x, v, gated) for x in tune], [x["drift"] for x in tune])
            cells = [pr([score(x, v, gated) for x in xs], [x["drift"] for x in xs], t) for xs in (tune, held)]
            shown = f"similarity < {-t:.3f}" if v == "minilm" else f"gain < {-t:.3f} bpb"
            label = v + (" gated" if gated and v != "minilm" else "")
            print(f"{label:<20} {shown:<24} tuning {fmt(cells[0][0])} / {fmt(cells[0][1])} ({cells[0][2]})   "
                  f"held out {fmt(cells[1][0])} / {fmt(cells[1][1])} ({cells[1][2]})")
        cells = [pr([score(x, "minilm") for x in xs], [x["drift"] for x in xs], -DRIFT_SIMILARITY)
                 for xs in (tune, held)]
        print(f"{'minilm':<20} {f'similarity < {DRIFT_SIMILARITY} (shipped)':<24} tuning {fmt(cells[0][0])} / "
              f"{fmt(cells[0][1])} ({cells[0][2]})   held out {fmt(cells[1][0])} / {fmt(cells[1][1])} ({cells[1][2]})")
    print("\nseconds per sample (all four gains, one thread): " +
          ", ".join(f"{c} {t:.3f}" for c, t in timing.items()) + f"; MiniLM (load + embed) {minilm_s:.3f}")
    for s, label in human:
        human_check(s, label, pairs, prompts)
    if args.json:
        args.json.write_text(json.dumps(scored, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
