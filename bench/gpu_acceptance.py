"""Every GPU figure gptlab promises, measured in one command of at most 8 minutes on one H100 or H200.

    python bench/gpu_acceptance.py --out gpu_acceptance.json              on the GPU machine (tools/gpu_run.sh)
    python bench/gpu_acceptance.py --smoke --out /tmp/smoke.json          the same code on CPU, tiny shapes
    python -m pytest tests/test_gpu_acceptance_smoke.py                   runs --smoke, so this cannot rot

One table, printed and written as JSON (--out), against the targets of issue 16:
  d12 training    gptlab's training step and nanochat's own at seq 2,048, 32 x 2,048 tokens per micro-batch,
                  bf16, compiled: tokens/s and MFU (peak: 989 TFLOP/s bf16 dense, H100 SXM and H200), and
                  which attention each ran                       target: MFU >= 45% and tokens/s >= nanochat's
  bpb             tokens/s against transformers, GPT-2 124M shape, same weights and windows    target: >= 3x
  sampling        tokens/s against transformers' generate, same prompts and lengths           target: >= 3x
  full eval       wall seconds of `gptlab eval`'s default on 10 d12-shape checkpoints         target: <= 60 s
  and the peak GPU memory of each. The rows and their exact work: bench/acceptance/*.py.

Each row runs in a child process of its own (`--row NAME`) with a time limit taken from --budget-s (default
460 s in all): a row that fails, hangs or crashes the GPU becomes one line of the table ("error: ...",
"timeout after N s") and the others still run; the JSON is rewritten after every row, so a run cut short
keeps what it measured. A row whose packages are not installed (transformers, tiktoken, tokenizers, ...) is
"skipped: X not installed". The GPU machine's own PyTorch is used (it may be older than ours) and nothing is
downloaded; gptlab is imported from this checkout. nanochat's source (MIT) is found by --nanochat-src, or in
.peers/nanochat, which `tools/gpu_run.sh prepare` fills. Exit status 0 whatever the figures (this measures;
it does not gate), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]          # this checkout's gptlab, and bench/acceptance

GIB = "peak GPU GiB"
# name: (module in bench/acceptance, its function, packages the row needs, seconds allowed on the GPU, in --smoke)
ROWS = {
    "train_gptlab": ("train_rows", "train_gptlab", ("torch", "numpy", "tiktoken", "tokenizers"), 115, 120),
    "train_nanochat": ("train_rows", "train_nanochat", ("torch", "numpy", "filelock"), 125, 120),
    "bpb": ("inference_rows", "bpb", ("torch", "transformers", "tiktoken", "tokenizers"), 45, 120),
    "sampling": ("inference_rows", "sampling", ("torch", "transformers", "tiktoken", "tokenizers"), 55, 120),
    "full_eval": ("eval_row", "full_eval", ("torch", "tokenizers", "tiktoken", "safetensors", "rich"), 110, 180),
}


def missing(*modules: str) -> str | None:
    """'skipped: X not installed' for the first module that cannot be imported here, else None."""
    for name in modules:
        if importlib.util.find_spec(name) is None:
            return f"skipped: {name} not installed"
    return None


def run_child(args) -> None:
    """One row in this process; its result is the last stdout line, 'ACCEPTANCE_ROW {json}'."""
    import torch  # deferred: the parent process only orchestrates and never needs it
    from acceptance.common import FULL, SMOKE, describe, pick  # deferred: imports torch
    shapes = SMOKE if args.smoke else FULL
    device = pick(args.device)
    if args.smoke:
        torch.set_num_threads(1)        # tiny shapes: one thread is fastest, and a busy machine punishes more
    module, function = ROWS[args.row][:2]
    t0 = time.perf_counter()
    try:
        out = getattr(importlib.import_module(f"acceptance.{module}"), function)(shapes, device, args)
    except Exception as e:            # the parent reports it as this row's status; the traceback goes to stderr
        traceback.print_exc()
        out = {"status": f"error: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"}
    out.setdefault("status", "ok")
    out.update(device=describe(device), seconds=round(time.perf_counter() - t0, 1))
    print("ACCEPTANCE_ROW " + json.dumps(out, default=str), flush=True)


def spawn(name: str, timeout: float, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--row", name, "--row-budget", f"{timeout:.0f}",
           "--nanochat-window", args.nanochat_window]
    cmd += ["--smoke"] if args.smoke else []
    cmd += ["--device", args.device] if args.device else []
    cmd += ["--nanochat-src", args.nanochat_src] if args.nanochat_src else []
    env = dict(os.environ, PYTHONUNBUFFERED="1", **({"OMP_NUM_THREADS": "1"} if args.smoke else {}))
    if args.smoke and name == "train_nanochat":
        env["TORCHDYNAMO_DISABLE"] = "1"      # its inductor-compiled optimizer would take minutes on a CPU
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
        stdout, stderr, status = r.stdout, r.stderr, None if r.returncode == 0 else f"exit status {r.returncode}"
    except subprocess.TimeoutExpired as e:
        stdout, stderr = _text(e.stdout), _text(e.stderr)
        status = f"timeout after {timeout:.0f} s"
    row = next((json.loads(line.split(" ", 1)[1]) for line in reversed(stdout.splitlines())
                if line.startswith("ACCEPTANCE_ROW ")), None)
    if row is None:
        last = [ln for ln in stderr.splitlines() if ln.strip()]
        row = {"status": status or "error: the row printed no result",
               "progress": [json.loads(ln.split(" ", 1)[1]) for ln in stdout.splitlines()
                            if ln.startswith("ACCEPTANCE_PROGRESS ")][-1:],
               "last_error_line": last[-1][:300] if last else ""}
    if not row["status"].startswith(("ok", "skipped")):
        row["stderr_tail"] = stderr[-2000:]
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    return row


def _text(b) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _status(rows: dict, name: str):
    return rows.get(name, {}).get("status", "not run")


def summarize(rows: dict) -> list[dict]:
    """The table: one line per figure, with its target and whether it was met (None: not measured)."""
    ok = {k: v for k, v in rows.items() if v.get("status") == "ok"}
    ours, peer = ok.get("train_gptlab"), ok.get("train_nanochat")
    mfu = ours and ours.get("mfu")
    faster = peer is None or (ours and ours["tokens_per_s"] >= peer["tokens_per_s"])
    out = [{"figure": "d12 training tokens/s (seq 2048, 32x2048, bf16, compiled)",
            "gptlab": ours and f"{ours['tokens_per_s']:,} (MFU {_pct(mfu)})",
            "peer": peer and f"nanochat {peer['tokens_per_s']:,} (MFU {_pct(peer.get('mfu'))})",
            "ratio": ours and peer and round(ours["tokens_per_s"] / peer["tokens_per_s"], 2),
            "target": "MFU >= 45% and >= nanochat", "met": None if mfu is None else mfu >= 0.45 and faster,
            GIB: [(ours or {}).get("peak_gpu_gib"), (peer or {}).get("peak_gpu_gib")],
            "notes": f"attention: gptlab {(ours or {}).get('attention')}; nanochat {(peer or {}).get('attention')}; "
                     f"status {_status(rows, 'train_gptlab')} / {_status(rows, 'train_nanochat')}"}]
    for name, peer_name, what in (("bpb", "transformers", "bpb tokens/s (GPT-2 124M shape)"),
                                  ("sampling", "transformers generate", "sampling tokens/s (GPT-2 124M shape)")):
        r = ok.get(name)
        tps = r and r["tokens_per_s"]
        if r is None:
            notes = _status(rows, name)
        elif name == "bpb":
            notes = f"bpb gap {r['bpb_gap']}, vs logits_to_keep {r['ratio_logits_to_keep']}x, batch {r['batch']}"
        else:
            notes = (f"decode {r['decode']}, eager decode {tps['gptlab (eager decode)']:,} tokens/s, "
                     f"greedy parity {r['greedy_parity']}")
        out.append({"figure": what, "gptlab": tps and f"{tps['gptlab']:,}",
                    "peer": tps and f"{peer_name} {tps['transformers']:,}", "ratio": r and r["ratio"],
                    "target": ">= 3x", "met": None if not r else r["ratio"] >= 3,
                    GIB: r and [r["peak_gpu_gib"].get(k) for k in ("gptlab", "transformers")], "notes": notes})
    r = ok.get("full_eval")
    out.append({"figure": "full default eval, 10 d12-shape checkpoints (s)",
                "gptlab": r and f"{r['wall_s_for_all']}" + (" (extrapolated)" if r["extrapolated"] else ""),
                "peer": None, "ratio": None, "target": "<= 60 s", "met": None if not r else r["wall_s_for_all"] <= 60,
                GIB: r and [r["peak_gpu_gib"]],
                "notes": _status(rows, "full_eval") if not r else
                f"{r['evaluated']} of {r['checkpoints']} evaluated, per checkpoint {r['per_checkpoint_s']}"})
    return out


def render(table: list[dict]) -> str:
    cols = ["figure", "gptlab", "peer", "ratio", "target", "met", GIB, "notes"]

    def show(v) -> str:
        if isinstance(v, list):
            return " / ".join("-" if x is None else f"{x:.2f}" for x in v)
        return "-" if v is None else "yes" if v is True else "no" if v is False else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(show(row.get(c)).replace("|", "/") for c in cols) + " |" for row in table]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the table and every row's details here as JSON")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (seconds): the code paths only")
    ap.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when present; --smoke: cpu)")
    ap.add_argument("--budget-s", type=float, default=460, help="seconds for all rows together (default 460)")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    ap.add_argument("--nanochat-src", help="folder holding nanochat's `nanochat/` package (default: .peers/nanochat)")
    ap.add_argument("--nanochat-window", default="L", help="nanochat's window_pattern (default L: full attention)")
    ap.add_argument("--row", choices=list(ROWS), help=argparse.SUPPRESS)
    ap.add_argument("--row-budget", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.smoke and not args.device:
        args.device = "cpu"
    if args.row:
        run_child(args)
        return 0
    names = [n for n in args.rows.split(",") if n]
    bad = [n for n in names if n not in ROWS]
    if bad or args.budget_s <= 0:
        ap.error(f"--rows {','.join(bad)}: expected some of {','.join(ROWS)}" if bad else "--budget-s must be > 0")
    if args.out and not Path(args.out).resolve().parent.is_dir():
        ap.error(f"--out {args.out}: no such folder")
    t0 = time.perf_counter()
    deadline = t0 + args.budget_s
    report = {"what": "bench/gpu_acceptance.py", "smoke": args.smoke,
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "device": None,
              "peak_bf16_flops_used": "989e12 (H100 SXM / H200 dense bf16)", "budget_s": args.budget_s, "rows": {},
              "wall_s": 0.0}
    for name in names:
        _, _, needs, full_s, smoke_s = ROWS[name]
        left = deadline - time.perf_counter()
        skip = missing(*needs) or (f"skipped: out of time ({left:.0f} s of the budget left)" if left < 20 else None)
        print(f"[{time.perf_counter() - t0:6.1f} s] {name}: {skip or 'running'}", file=sys.stderr, flush=True)
        limit = min(smoke_s if args.smoke else full_s, left)
        report["rows"][name] = {"status": skip} if skip else spawn(name, limit, args)
        print(f"[{time.perf_counter() - t0:6.1f} s] {name}: {report['rows'][name]['status']}", file=sys.stderr,
              flush=True)
        report["device"] = report["device"] or report["rows"][name].get("device")
        report["table"] = summarize(report["rows"])
        report["wall_s"] = round(time.perf_counter() - t0, 1)
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    report["table"] = summarize(report["rows"])
    print(render(report["table"]))
    print(f"\n{report['device']}; {report['wall_s']} s; peak bf16 FLOP/s for MFU: {report['peak_bf16_flops_used']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
