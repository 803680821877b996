"""Sample the default probe suite from real checkpoints into a diagnose-ready JSONL (the real-output benchmark).

    python tools/real_samples.py --out samples.jsonl --db real.sqlite \\
        d4=runs/real_d4/step_000300 d4=runs/real_d4/step_001200 nanochat=../shared/peers/nanochat/...

Each NAME=CHECKPOINT is sampled with `gptlab eval --no-bpb --no-diagnose` (temperature 0.8, one sample per
probe and length; 80 and 200 tokens drawn with different seeds so the short sample is not the long one's
prefix), then every stored sample becomes one line in the format `gptlab diagnose` reads, with `model` (NAME),
`step`, `checkpoint_format`, `probe`, `max_tokens`, `temperature` and `seed` kept so a reader can trace it.
How tests/data/diagnose_real.jsonl was made is in docs/failure_modes.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from gptlab.store import Store

LENGTHS = {80: 1, 200: 2}   # max_tokens -> job seed (tests/data/diagnose_real.jsonl; --seeds changes them)


def sample(db: Path, checkpoint: str, *, samples: int, threads: int, lengths: dict[int, int]) -> None:
    for max_tokens, seed in lengths.items():
        subprocess.run([sys.executable, "-m", "gptlab", "eval", checkpoint, "--db", str(db), "--no-bpb",
                        "--no-diagnose", "--temperature", "0.8", "--max-tokens", str(max_tokens),
                        "--seed", str(seed), "--samples", str(samples), "--threads", str(threads)], check=True)


def lines(db: Path, names: dict[str, str]) -> list[dict]:
    store = Store(db, readonly=True)
    rows = store.query(
        "SELECT s.id, s.completion, s.max_tokens, s.temperature, s.seed, s.sample_index, m.path, m.step, "
        "m.format, p.name AS probe, p.domain, p.language, p.prompt, p.spec_json "
        "FROM samples s JOIN models m USING (weights_hash) JOIN probes p USING (probe_hash) ORDER BY s.id")
    out = []
    for r in rows:
        spec = json.loads(r["spec_json"] or "{}")
        name = next((n for path, n in names.items() if Path(r["path"]).resolve() == Path(path).resolve()
                     or Path(r["path"]).resolve().is_relative_to(Path(path).resolve())), None)
        if name is None:
            continue    # another checkpoint in the same store
        line = {"id": f"{name}-{r['step']}-{r['probe']}-{r['max_tokens']}-{r['sample_index']}",
                "model": name, "step": r["step"], "checkpoint_format": r["format"], "probe": r["probe"],
                "domain": r["domain"], "prompt": r["prompt"], "completion": r["completion"],
                "max_tokens": r["max_tokens"], "temperature": r["temperature"], "seed": r["seed"]}
        if r["language"]:
            line["language"] = r["language"]
        for key in ("code_prefix", "tests", "entry_point", "requires", "schema"):
            if spec.get(key):
                line[key] = spec[key]
        out.append(line)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", metavar="NAME=CHECKPOINT")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--samples", type=int, default=1, help="samples per probe and length (default 1)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-sample", action="store_true", help="only export what the store holds")
    parser.add_argument("--seeds", type=int, nargs=2, default=list(LENGTHS.values()), metavar=("SEED80", "SEED200"),
                        help="job seeds of the 80- and 200-token samples (default 1 2; tests/data/"
                             "diagnose_real_fresh.jsonl used 3 4)")
    args = parser.parse_args()
    names = {}   # checkpoint path -> model name
    for spec in args.checkpoints:
        name, _, path = spec.partition("=")
        names[path] = name
    if not args.no_sample:
        for path in names:
            sample(args.db, path, samples=args.samples, threads=args.threads,
                   lengths=dict(zip(LENGTHS, args.seeds)))
    rows = lines(args.db, names)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} samples -> {args.out}")


if __name__ == "__main__":
    main()
