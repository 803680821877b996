"""The "Diagnosis" section: per-domain verdicts, the failure matrix (probes x failure modes), pass@k.

    gptlab report runs/demo --db results.sqlite
    python -m pytest tests/test_report.py

All rates are shares of the diagnosed checkpoint's samples at the report's temperature (see
gptlab/report/failure_summary.py); the verdicts and pass@k are the diagnosis rollup's, shown as they are.
"""

from __future__ import annotations

from gptlab.report import plots
from gptlab.report.blocks import Cell, Figure, Note, P, Table
from gptlab.report.render import section
from gptlab.verdicts import DomainVerdict

VERDICT_GOOD = {DomainVerdict.WORKS: True, DomainVerdict.PARTLY: None, DomainVerdict.FAILS: False}


def diagnosis_section(store, ctx):
    d = ctx.diagnosis
    if not d.available:
        return section("Diagnosis", [Note(d.missing)])
    probes = d.probe_stats()
    seen = [m for m in d.modes if any(p["rates"].get(m) for p in probes)]
    blocks = [P(f"Samples of step **{d.step}** at temperature **{d.temperature:g}**: "
                f"{sum(p['n'] for p in probes)} samples over {len(probes)} probes, detector version "
                f"`{ctx.detector_version}`.")]
    verdict_rows = [[dom, Cell(v["verdict"], good=VERDICT_GOOD.get(v["verdict"])), ", ".join(v["dominant"]) or "–",
                     v["why"]] for dom, v in sorted(d.verdicts.items())]
    if verdict_rows:
        blocks.append(Table(["domain", "verdict", "dominant failure modes", "why"], verdict_rows,
                            caption="per-domain verdicts of the diagnosis rollup"))
    if seen:
        blocks.append(Figure("failures", plots.failures_svg([p["probe"] for p in probes], seen,
                                                            [[p["rates"].get(m) for m in seen] for p in probes]),
                             "share of each probe's samples showing each failure mode"))
    ks = sorted({k for p in probes for k in p["pass_at"]}, key=lambda k: int(k.split("@")[1]))
    header = ["probe", "domain", "samples"] + [m.replace("_", " ") for m in seen] + ks
    rows = []
    for p in probes:
        row = [p["probe"], p["domain"], str(p["n"])]
        row += [Cell(f"{p['rates'][m]:.0%}" if p["rates"].get(m) else "·", heat=p["rates"].get(m) or 0)
                for m in seen]
        row += [f"{p['pass_at'][k]:.2f}" if p["pass_at"].get(k) is not None else "–" for k in ks]
        rows.append(row)
    blocks.append(Table(header, rows, numeric=[False, False, True] + [True] * (len(seen) + len(ks)),
                        caption="failure matrix: rate of each mode per probe; pass@k only for probes with tests"))
    never = [m for m in d.modes if m not in seen]
    if never:
        blocks.append(P("Never observed at this checkpoint: " + ", ".join(f"`{m}`" for m in never) + "."))
    by_len = d.by_length
    if len(by_len) > 1:
        modes = [m for m in d.modes if any(r["rates"].get(m) for r in by_len.values())]
        blocks.append(Table(["max tokens", "samples"] + [m.replace("_", " ") for m in modes],
                            [[str(n), str(r["n"])] + [Cell(f"{r['rates'].get(m, 0):.0%}", heat=r["rates"].get(m, 0))
                                                      for m in modes] for n, r in sorted(by_len.items())],
                            numeric=[True] * (2 + len(modes)),
                            caption="failure rates by sample length: what appears only in longer samples"))
    if len(d.by_step) > 1:
        domains = sorted({dom for s in d.by_step for dom in d.step_verdicts(s)})
        blocks.append(Table(["step"] + domains,
                            [[str(s)] + [Cell(d.step_verdicts(s).get(dom, "–"),
                                              good=VERDICT_GOOD.get(d.step_verdicts(s).get(dom)))
                                         for dom in domains] for s in sorted(d.by_step)],
                            caption="per-domain verdict at each checkpoint"))
    temps = d.repetition_by_temperature
    if temps:
        blocks.append(Table(["temperature", "samples", "repetition loops"],
                            [[f"{t:g}", str(n), Cell(f"{r:.0%}", heat=r)] for t, (r, n) in sorted(temps.items())],
                            numeric=[True, True, True], caption=f"repetition loops per temperature at step {d.step}"))
    return section("Diagnosis", blocks)
