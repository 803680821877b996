"""Copy a small, attributed slice of ../shared/corpus into gptlab/corpus/ (run once by maintainers).

    python tools/slice_corpus.py ../shared/corpus gptlab/corpus --train-kb 330 --val-kb 45 --demo-val-kb 12

Documents are taken whole, in file order; the last ~val-kb of each domain (whole documents, disjoint from
train) become its validation file. The demo's held-out files (gptlab/corpus/demo/) are the first documents of
each validation file up to --demo-val-kb, cut at a line end: small enough that `gptlab demo` scores every
checkpoint in seconds. `source` and `license` fields are kept on every line, and SOURCES.md is
copied beside the slice. gptlab never reads ../shared at run time: only this script does.
"""

import argparse
import json
import shutil
from pathlib import Path


def take(lines, budget):
    out, used = [], 0
    for line in lines:
        n = len(json.loads(line)["text"].encode())
        if n > budget // 2:        # skip huge single files: they would make a domain one document
            continue
        if used + n > budget:
            break
        out.append(line)
        used += n
    return out, used


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--train-kb", type=int, default=330)
    ap.add_argument("--val-kb", type=int, default=45)
    ap.add_argument("--demo-val-kb", type=int, default=12)
    a = ap.parse_args()
    src, dst = Path(a.src), Path(a.dst)
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.jsonl")):
        lines = f.read_text().splitlines()
        val, vb = take(reversed(lines), a.val_kb * 1024)
        rest = lines[: len(lines) - len(val)]
        train, tb = take(rest, a.train_kb * 1024)
        (dst / f"{f.stem}.train.jsonl").write_text("\n".join(train) + "\n")
        (dst / f"{f.stem}.val.jsonl").write_text("\n".join(reversed(val)) + "\n")
        print(f"{f.stem}: train {len(train)} docs {tb/1024:.0f} KB, val {len(val)} docs {vb/1024:.0f} KB")
    (dst / "demo").mkdir(exist_ok=True)
    for f in sorted(dst.glob("*.val.jsonl")):
        demo, budget = [], a.demo_val_kb * 1024
        for line in f.read_text().splitlines():
            doc = json.loads(line)
            if budget <= 0:
                break
            text = doc["text"].encode()[:budget].decode(errors="ignore")
            cut = len(text.encode()) >= budget
            doc["text"] = text[: text.rfind("\n") + 1] if cut else text
            if doc["text"].strip():
                demo.append(json.dumps(doc))
            budget -= len(doc["text"].encode())
            if cut:                 # the budget ends inside this document: no crumbs of the next ones
                break
        (dst / "demo" / f.name).write_text("\n".join(demo) + "\n")
    shutil.copy(src / "SOURCES.md", dst / "SOURCES.md")


if __name__ == "__main__":
    main()
