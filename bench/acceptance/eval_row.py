"""The full-evaluation row of bench/gpu_acceptance.py: `gptlab eval`'s default work on 10 d12-shape checkpoints.

    python bench/gpu_acceptance.py --row full_eval        (one row alone; the parent runs each so)

Setup, not timed: a byte-level BPE of 32,768 ids trained on 3M characters of the shipped corpus
(gptlab.tokenizer.train_bpe), and a gptlab run directory of 10 checkpoints of the d12 shape (12 layers, width
768, vocabulary 32,768, context 2,048), each initialised with its own seed (`GPT.init_weights`), so 10
different weights hashes: nothing comes from the store's cache. (--smoke: 2 tiny checkpoints, 1 sample of 4 and
8 tokens, and the 7 domains cut to their first 3,000 characters.) Random weights sample all 200 tokens (they
almost never emit a document separator), the worst case for sampling time.

Timed: the evaluation job with its defaults — 7-domain bpb on the shipped validation corpus (a checkpoint
outside a configured run gets those), the default probe suite sampled 8 times at temperature 0.8 with 80 and
200 tokens, every sample diagnosed (probe tests executed in the sandbox) — on the device in its default
dtype (bfloat16 weights on CUDA). The checkpoints are evaluated one `evaluate` call each into one store, so
that when the row's time runs short the seconds so far and an extrapolation are still reported.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from acceptance.common import Shapes, peak_gib, reset_peak, sync

ROOT = Path(__file__).resolve().parents[2]


def _tokenizer(s: Shapes, out: Path):
    from gptlab.data import iter_documents  # deferred: child process only
    from gptlab.tokenizer import load_tokenizer, train_bpe  # deferred: needs tokenizers and tiktoken

    files = sorted((ROOT / "gptlab" / "corpus").glob("*.train.jsonl"))

    def texts():
        used = 0
        for f in files:
            for doc in iter_documents(f):
                if used >= s.eval_tok_chars:
                    return
                used += len(doc)
                yield doc
    path = train_bpe(texts(), s.eval_tok_vocab, out)
    return path, load_tokenizer(path)


def _checkpoints(s: Shapes, run_dir: Path, tok_file: Path, tok) -> list[Path]:
    from gptlab.checkpoints.gptlab_run import save_checkpoint  # deferred: child process only
    from gptlab.models.gpt import GPT, GPTConfig  # deferred: as above

    cfg = GPTConfig(n_layer=s.depth, n_embd=s.width, n_head=s.heads, n_kv_head=s.heads, vocab_size=s.vocab,
                    sequence_len=s.seq)
    model = GPT(cfg)
    out = []
    for i in range(1, s.checkpoints + 1):
        model.init_weights(seed=i)
        meta = {"step": 100 * i, "tokens_seen": 100 * i * s.rows * s.seq, "tokenizer_hash": tok.identity()}
        out.append(save_checkpoint(run_dir, 100 * i, model, [], meta, {"name": "acceptance-d12"}, tok_file))
    return out


def _small_domains(s: Shapes, out: Path) -> dict | None:
    """--smoke: the 7 shipped validation domains cut to their first eval_bpb_chars characters (same domains,
    same scoring path, seconds on a CPU); None for the full run (the job then takes the files whole)."""
    if s.eval_bpb_chars is None:
        return None
    from gptlab.data import iter_documents  # deferred: child process only

    out.mkdir(parents=True, exist_ok=True)
    domains = {}
    for f in sorted((ROOT / "gptlab" / "corpus").glob("*.val.jsonl")):
        text = "\n".join(iter_documents(f))[:s.eval_bpb_chars]
        domains[f.name.removesuffix(".val.jsonl")] = str(out / f.name.replace(".jsonl", ".txt"))
        Path(domains[f.name.removesuffix(".val.jsonl")]).write_text(text)
    return domains


def full_eval(s: Shapes, device: torch.device, args) -> dict:
    from gptlab.evaluate.job import evaluate  # deferred: child process only

    work = Path(tempfile.mkdtemp(prefix="gptlab-acceptance-"))
    t0 = time.perf_counter()
    tok_file, tok = _tokenizer(s, work / "tokenizer")
    steps = _checkpoints(s, work / "run", tok_file, tok)
    bpb_files = _small_domains(s, work / "domains")
    setup_s = time.perf_counter() - t0
    budget = (args.row_budget or 1e9) - setup_s - 5       # what is left of this row's time for the evaluation
    db, lines, per = str(work / "results.sqlite"), [], []
    totals = {"bpb_computed": 0, "generations": 0, "samples_written": 0, "findings_computed": 0, "model_calls": 0}
    warnings: list[str] = []
    reset_peak(device)
    for d in steps:
        if per and sum(per) + max(per) > budget:
            break
        sync(device)
        t = time.perf_counter()
        summary = evaluate([str(d)], db=db, device=str(device), progress=False, samples=s.eval_samples,
                           max_tokens=s.eval_lengths, bpb_files=bpb_files, echo=lines.append)
        sync(device)
        per.append(time.perf_counter() - t)
        print("ACCEPTANCE_PROGRESS " + json.dumps({"evaluated": len(per), "seconds": round(sum(per), 2)}), flush=True)
        for k in totals:
            totals[k] += getattr(summary, k)
        warnings += [w for w in summary.warnings if w not in warnings]
    done = len(per)
    wall = sum(per)
    return {"checkpoints": s.checkpoints, "evaluated": done, "wall_s": round(wall, 2),
            "wall_s_for_all": round(wall if done == s.checkpoints else wall / done * s.checkpoints, 2),
            "extrapolated": done < s.checkpoints, "per_checkpoint_s": [round(x, 2) for x in per],
            "setup_s": round(setup_s, 1), "tokenizer_vocab": tok.vocab_size,
            "work": dict(totals, samples=s.eval_samples, lengths=list(s.eval_lengths)),
            "warnings": warnings[:5], "peak_gpu_gib": peak_gib(device)}
