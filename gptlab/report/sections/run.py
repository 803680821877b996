"""The "Run" and "Training curve" sections: what was trained, on how many tokens, and how val bpb moved.

    gptlab report runs/demo --db results.sqlite
    python -m pytest tests/test_report.py

Tokens seen = steps x tokens per step; tokens per parameter is compared with the ~20 of the Chinchilla rule
(Hoffmann et al. 2022: compute-optimal training uses about 20 tokens per parameter).
"""

from __future__ import annotations

from gptlab.report import plots
from gptlab.report.blocks import Bullets, Figure, Note, P, Table, fmt, human
from gptlab.report.render import section

CHINCHILLA_TOKENS_PER_PARAM = 20
LIST_CHECKPOINTS = 12          # more than this: one summary line instead of a list
_KEYS = {"depth": ("n_layer", "depth", "num_hidden_layers", "n_layers"),
         "width": ("n_embd", "hidden_size", "d_model", "dim"),
         "heads": ("n_head", "num_attention_heads", "n_heads")}


def arch_value(arch: dict, what: str):
    return next((arch[k] for k in _KEYS[what] if arch.get(k)), None)


def budget(ctx) -> dict:
    """Steps, tokens per step, tokens seen and tokens per parameter of the newest checkpoint (None: unknown)."""
    m = ctx.latest
    steps, tps = ctx.last_step, ctx.tokens_per_step
    seen = steps * tps if steps is not None and tps else (ctx.tokens_at(steps, m["tokens_seen"]) if m else None)
    params = m["params"] if m else None
    return {"steps": steps, "tokens_per_step": tps, "tokens_seen": seen, "params": params,
            "per_param": seen / params if seen and params else None}


def run_section(store, ctx):
    m, arch, b = ctx.latest, ctx.arch, budget(ctx)
    blocks = []
    if m is None:
        blocks.append(Note(f"no evaluated checkpoint in {ctx.store_path}: run `gptlab eval RUN_DIR --db "
                           f"{ctx.store_path}` to measure bpb and sample the probes"))
    rows = []
    if m:
        rows += [["model", f"{m['family'] or '?'} ({m['format']}), run `{m['run']}`"],
                 ["parameters", f"{human(m['params'])} ({m['params']:,})" if m["params"] else "–"],
                 ["depth x width (heads)", f"{fmt(arch_value(arch, 'depth'))} x {fmt(arch_value(arch, 'width'))} "
                                           f"({fmt(arch_value(arch, 'heads'))})"],
                 ["vocabulary", f"{m['vocab_size']:,}" if m["vocab_size"] else "–"],
                 ["context", f"{m['context']:,} tokens" if m["context"] else "–"]]
    if b["tokens_per_step"]:
        rows.append(["tokens per step", f"{b['tokens_per_step']:,}"])
    if b["steps"] is not None:
        planned = ctx.run_config.get("train", {}).get("steps")
        rows.append(["steps", f"{b['steps']:,}" + (f" of {planned:,} planned" if planned else "")])
    if b["tokens_seen"]:
        how = (f"{b['steps']:,} x {b['tokens_per_step']:,} = " if b["steps"] and b["tokens_per_step"] else "")
        rows.append(["tokens seen", f"{how}{b['tokens_seen']:,} (~{human(b['tokens_seen'])})"])
    if b["per_param"]:
        ratio = b["per_param"] / CHINCHILLA_TOKENS_PER_PARAM
        verdict = ("under-trained for its size" if ratio < 0.8 else "past compute-optimal" if ratio > 1.25
                   else "about compute-optimal")
        rows.append(["tokens per parameter", f"{b['per_param']:.1f} ({ratio:.2g}x the ~20 of the Chinchilla "
                                             f"rule: {verdict})"])
    if rows:
        blocks.append(Table(["", "value"], rows))
    mix = ctx.mixture
    if mix:
        val = ctx.latest_bpb
        blocks.append(Table(["data domain", "probe group", "share of training tokens", "val bytes scored"],
                            [[d, v["group"] or "–", f"{v['share']:.1%}",
                              f"{val[d]['bytes']:,}" if d in val and val[d]["bytes"] else "–"]
                             for d, v in mix.items()], numeric=[False, False, True, True],
                            caption="the training mixture from the run's config"))
    elif ctx.run is None:
        blocks.append(Note("no training run imported for these checkpoints (run config, tokens per step, "
                           "training log): `gptlab eval` imports them from a gptlab run directory", "info"))
    if len(ctx.models) > LIST_CHECKPOINTS:
        steps = [c["step"] for c in ctx.models if c["step"] is not None]
        span = f", steps {min(steps):,}–{max(steps):,}" if steps else ""
        blocks.append(P(f"**Checkpoints covered**: {len(ctx.models)}{span}, the newest at `{m['path']}`."))
    elif ctx.models:
        blocks.append(P(f"**Checkpoints covered** ({len(ctx.models)}):"))
        blocks.append(Bullets([f"step {fmt(c['step'])} — `{c['path']}` (weights {c['weights_hash'][:12]})"
                               for c in ctx.models]))
    return section("Run", blocks)


def curve_section(store, ctx):
    c = ctx.curve
    blocks = []
    if c is None:
        blocks.append(Note("no val bpb for these checkpoints: neither `gptlab eval` results nor a training log "
                           "with validation rows are in the store"))
        return section("Training curve", blocks)
    train = [(r["tokens_seen"] if c.unit == "tokens" and r["tokens_seen"] else r["step"], r["train_loss"])
             for r in ctx.metrics if r["train_loss"] is not None]
    ckpt_x = [ctx.tokens_at(m["step"], m["tokens_seen"]) if c.unit == "tokens" else m["step"] for m in ctx.models]
    fit = ctx.trend.fit if ctx.trend else None
    law = ctx.trend.law if ctx.trend else None
    svg = plots.curve_svg(c, fit, train, [x for x in ckpt_x if x is not None], law=law)
    blocks.append(Figure("curve", svg, f"val bits per byte ({c.source}) per domain and overall, with the "
                                       f"{'schedule-aware fit and a 2x run' if law else 'power-law fit'}; train "
                                       f"loss from the training log"))
    domains = sorted(c.domains)
    log_val = {r["step"]: r["val_bpb"] for r in ctx.metrics if r["val_bpb"] is not None}
    header = ["step", "tokens seen", f"val bpb ({c.source})"] + domains + ["train loss"]
    if c.source == "gptlab eval" and log_val:
        header.insert(3, "val bpb (training log)")
    rows = []
    for i, step in enumerate(c.steps):
        row = [f"{step:,}" if step is not None else "–", human(c.x[i]) if c.unit == "tokens" else "–",
               fmt(c.overall[i])]
        if "val bpb (training log)" in header:
            row.append(fmt(log_val.get(step)))
        row += [fmt(c.domains[d][i]) for d in domains]
        row.append(fmt(ctx.logged_at(step, "train_loss")))
        rows.append(row)
    blocks.append(Table(header, rows, numeric=[True] * len(header),
                        caption="train loss is nats per token at that step (or the last logged step before)"))
    if len(c.steps) < 2:
        blocks.append(Note("only one checkpoint has a val bpb: the curve is a single point; evaluate more "
                           "checkpoints of the run to see a trend"))
    return section("Training curve", blocks)
