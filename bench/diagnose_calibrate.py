"""How often each text detector fires on human writing: the calibration behind docs/failure_modes.md.

    python bench/diagnose_calibrate.py [--corpus DIR (default: gptlab/corpus; a larger corpus of <domain>.jsonl files works too)] [--n 400] [--seed 0]

Human text from the corpus plays the model: a document's passage of 30 words is the prompt, the next
80-160 words its "completion". Every detector whose threshold was set on human text runs on these pairs,
and the share flagged is printed (a false-positive rate: the human continuation has none of the failure
modes; `invented_words` also on the continuation's first 25 words, as short as a short sample). Code windows (20-60 lines of the code domains) check repetition_loop and no_code; whole 10-K
sections check hallucinated_section and malformed_figure. For topic_drift the same pairs are compared with pairs whose
completion comes from another document of the domain: the threshold is chosen so that ~5% of human
continuations fall below it, and the share of other-document tails below it is reported, then the shares the
whole rule flags (below the threshold and not excused as word salad in the prompt's domain).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from gptlab.diagnose import topic_drift as drift
from gptlab.diagnose.hallucinated_section import hallucinated_section
from gptlab.diagnose.invented_words import invented_words
from gptlab.diagnose.languages import mask
from gptlab.diagnose.malformed_figure import malformed_figure
from gptlab.diagnose.no_code import no_code
from gptlab.diagnose.number_fixation import number_fixation
from gptlab.diagnose.program import build_program
from gptlab.diagnose.prompt_echo import prompt_echo
from gptlab.diagnose.repetition_loop import repetition_loop
from gptlab.diagnose.word_fixation import word_fixation

PROSE = ("web_en", "finance_sec")
CODE = ("code_python", "code_go", "code_java", "code_javascript", "code_sql")


def documents(corpus: Path, name: str) -> list[str]:
    """A domain's documents: <name>.jsonl, or the shipped slice's <name>.train.jsonl + <name>.val.jsonl."""
    files = [corpus / f"{name}.jsonl"] if (corpus / f"{name}.jsonl").exists() else \
        [corpus / f"{name}.train.jsonl", corpus / f"{name}.val.jsonl"]
    out = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            out += [json.loads(line)["text"] for line in f]
    return out


def prose_pairs(docs: list[str], n: int, rnd: random.Random) -> list[tuple[str, str, str]]:
    """(prompt, human continuation, a continuation-sized passage of another document)."""
    words = [d.split() for d in docs if len(d.split()) > 400]
    out = []
    for _ in range(n):
        i = rnd.randrange(len(words))
        w = words[i]
        start = rnd.randrange(0, len(w) - 200)
        length = rnd.choice((80, 120, 160))
        other = words[rnd.choice([j for j in range(len(words)) if j != i])]
        o = rnd.randrange(0, len(other) - length)
        out.append((" ".join(w[start:start + 30]), " " + " ".join(w[start + 30:start + 30 + length]),
                    " " + " ".join(other[o:o + length])))
    return out


def code_windows(docs: list[str], n: int, rnd: random.Random, language: str) -> list[str]:
    """Windows of 20, 40 or 60 lines that do not start inside a comment or string (a window cut from the
    middle of a licence header would read as prose, out of its context)."""
    files = [d for d in docs if d.count("\n") > 80]
    masked: dict[int, str] = {}     # each file is masked once, however many windows it gives
    out = []
    while len(out) < n:
        i = rnd.randrange(len(files))
        lines = files[i].splitlines()
        size = rnd.choice((20, 40, 60))
        start = rnd.randrange(0, len(lines) - size)
        text = "\n".join(lines[start:start + size]) + "\n"
        offset = sum(len(line) + 1 for line in lines[:start])
        if i not in masked:
            masked[i] = mask(files[i], language)
        if masked[i][offset:offset + len(text) - 1] == mask(text, language)[:-1]:
            out.append(text)
    return out


def rate(flags) -> str:
    flags = list(flags)
    return f"{sum(flags)}/{len(flags)} ({100 * sum(flags) / max(1, len(flags)):.1f}%)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=Path(__file__).resolve().parent.parent / "gptlab" / "corpus", type=Path)
    ap.add_argument("--n", type=int, default=400, help="pairs / windows per domain")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    t0 = time.time()
    print(f"corpus {args.corpus}, {args.n} samples per domain\n")
    print("== prose detectors on human continuations (false-positive rates)")
    drift_rows = {}
    for name in PROSE:
        docs = documents(args.corpus, name)
        pairs = prose_pairs(docs, args.n, rnd)
        echo = [prompt_echo(p, c) for p, c, _ in pairs]
        word = [word_fixation(c) for _, c, _ in pairs]
        num = [number_fixation(p, c) for p, c, _ in pairs]
        rep = [repetition_loop(c) for _, c, _ in pairs]
        print(f"{name}:")
        print(f"  prompt_echo      {rate(f.failed for f in echo)}   echo_words p99 "
              f"{np.percentile([f.metrics['echo_words'] for f in echo], 99):.0f}, max "
              f"{max(f.metrics['echo_words'] for f in echo)}")
        print(f"  echo_sentence_words max {max(f.metrics['echo_sentence_words'] for f in echo)} (a whole prompt sentence "
              f"copied; the rule needs 5)")
        print(f"  repetition_loop  {rate(f.failed for f in rep)}")
        made_up = [invented_words(p, c) for p, c, _ in pairs]
        short = [invented_words(p, " ".join(c.split()[:25])) for p, c, _ in pairs]
        print(f"  invented_words   {rate(f.failed for f in made_up)}   on the first 25 words {rate(f.failed for f in short)}; "
              f"different invented words max {max(f.metrics['invented_words'] for f in made_up)}")
        shares = [f.metrics["top_word_share"] for f in word]
        print(f"  word_fixation    {rate(f.failed for f in word)}   top_word_share p99 "
              f"{np.percentile(shares, 99):.3f}, top_word_count max {max(f.metrics['top_word_count'] for f in word)}")
        print(f"  number_fixation  {rate(f.failed for f in num)}   longest_number_run max "
              f"{max(f.metrics['longest_number_run'] for f in num)}")
        drift_rows[name] = pairs
        if name == "finance_sec":
            sec = [hallucinated_section(d) for d in docs]
            fig = [malformed_figure(d) for d in docs]
            print(f"  hallucinated_section on whole 10-K sections {rate(f.failed for f in sec)}, "
                  f"{sum(f.metrics['item_headings'] + f.metrics['item_references'] for f in sec)} Item mentions")
            print(f"  malformed_figure on whole 10-K sections     {rate(f.failed for f in fig)}, "
                  f"{sum(f.metrics['figures'] for f in fig)} figures")
    print("\n== code detectors on human code windows (false-positive rates)")
    for name in CODE:
        language = name.removeprefix("code_")
        windows = code_windows(documents(args.corpus, name), args.n, rnd, language)
        loops = [repetition_loop(w, code=True) for w in windows]
        answers = [no_code(build_program("", w, language), language) for w in windows]
        only_comments = sum(f.failed and not f.metrics["code_lines"] + f.metrics["plain_lines"]
                            + f.metrics["prose_lines"] + f.metrics["foreign_lines"] for f in answers)
        print(f"  {name:16s} repetition_loop {rate(f.failed for f in loops)}   no_code "
              f"{rate(f.failed for f in answers)} ({only_comments} of them comments only)")
    print("\n== topic_drift: similarity of the completion's tail to the prompt")
    for name, pairs in drift_rows.items():
        same = drift.similarities([(p, c) for p, c, _ in pairs])
        other = drift.similarities([(p, o) for p, _, o in pairs])
        same, other = np.array([s for s in same if s is not None]), np.array([s for s in other if s is not None])
        p5 = np.percentile(same, 5)
        auc = (same[:, None] > other[None, :]).mean()
        print(f"  {name}: human continuation p2 {np.percentile(same, 2):.3f} p5 {p5:.3f} median "
              f"{np.median(same):.3f}; other document median {np.median(other):.3f}; AUC {auc:.3f}")
        t = drift.DRIFT_SIMILARITY
        print(f"    at the threshold {t}: human continuations below {rate(same < t)}, "
              f"other-document tails below {rate(other < t)}")
        flags = [[f.failed for f in drift.topic_drift_many(ps) if not isinstance(f, str)]
                 for ps in ([(p, c) for p, c, _ in pairs], [(p, o) for p, _, o in pairs])]
        print(f"    flagged (salad in the prompt's domain excused): human continuations {rate(flags[0])}, "
              f"other-document tails {rate(flags[1])}")
    print(f"\n{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
