"""Which checkpoints a report or comparison covers (PATH arguments matched against the results store), and
which detector version's findings it reads.

    gptlab report runs/d12 --db results.sqlite              every checkpoint of the run
    gptlab report runs/d12/step_050000 --db results.sqlite  one checkpoint
    gptlab report d12 --db results.sqlite                   a run by its name in the store
    gptlab report ladder-demo --db results.sqlite           every rung of a ladder (gptlab ladder)
    python -m pytest tests/test_report.py

Each PATH is tried in this order, and the report covers the union of what they match:
1. a run name in the store (`runs.run` or `models.run`): all checkpoints of that run;
2. an existing file or folder: checkpoints whose stored path is that path or lies under it, plus all
   checkpoints of a run whose stored run directory is that folder, or whose run name is the folder's name;
3. a ladder's name (`ladder_rungs.ladder`, written by `gptlab ladder`): all checkpoints of its rungs' runs.
The run whose training log and config the report shows is the one most of the matched checkpoints belong to
(for a ladder: its largest rung).
An empty store gives an empty selection (the report then says what is missing); a PATH that matches
nothing in a store that has results is an error naming the runs the store does have.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gptlab.diagnose import DETECTOR_VERSION
from gptlab.errors import GptlabError


@dataclass
class Subject:
    label: str                   # what the report is about, for its title
    run: str | None              # the run whose config and training log are shown
    models: list[dict] = field(default_factory=list)   # `models` rows, oldest step first


def _resolve(p) -> Path | None:
    try:
        return Path(p).expanduser().resolve()
    except (OSError, RuntimeError, TypeError):
        return None


def _under(path: Path | None, root: Path) -> bool:
    return path is not None and (path == root or root in path.parents)


def select(store, targets: list[str]) -> Subject:
    models = store.models()
    runs = {r["run"]: r for r in store.runs()}
    if not targets:
        raise GptlabError("report: give a run directory, a checkpoint or a run name")
    chosen: dict[str, dict] = {}
    named_runs: list[str] = []          # runs matched as a whole (by name or run directory)
    ladders = {}
    for r in store.ladder_rungs():
        ladders.setdefault(r["ladder"], []).append(r["run"])
    for target in targets:
        hits = [m for m in models if m["run"] == target]
        run_hit = target in runs or bool(hits)
        if not run_hit and target in ladders and not Path(target).expanduser().exists():
            hits = [m for m in models if m["run"] in ladders[target]]
            named_runs += ladders[target]
            run_hit = True
        root = _resolve(target) if Path(target).expanduser().exists() else None
        if not run_hit and root is not None:
            dir_runs = {name for name, r in runs.items() if r["path"] and _resolve(r["path"]) == root}
            if root.is_dir():
                dir_runs |= {m["run"] for m in models if m["run"] == root.name}
                dir_runs |= {root.name} & set(runs)
            hits = [m for m in models if m["run"] in dir_runs or _under(_resolve(m["path"]), root)]
            named_runs += sorted(dir_runs)
            run_hit = bool(dir_runs)
        elif run_hit:
            named_runs.append(target)
        if not hits and not run_hit:
            if not models and not runs:
                continue            # empty store: the report will say so
            known = ", ".join(sorted(set(runs) | {m["run"] for m in models if m["run"]})) or "none"
            raise GptlabError(f"{target}: no results in {store.path} for this run or path (runs in the store: "
                              f"{known}); evaluate it first: gptlab eval {target} --db {store.path}")
        for m in hits:
            chosen[m["weights_hash"]] = m
    picked = sorted(chosen.values(), key=lambda m: (m["run"] or "", m["step"] is None, m["step"] or 0))
    counts = Counter(m["run"] for m in picked if m["run"])
    run = counts.most_common(1)[0][0] if counts else (named_runs[0] if named_runs else None)
    if len(targets) == 1 and targets[0] in ladders and len(named_runs) > 1:
        label = f"ladder {targets[0]}"
        run = ladders[targets[0]][-1]                   # the largest rung's curve and config stand for the ladder
    elif len(targets) == 1 and named_runs:
        label = run
    elif len(picked) == 1:
        m = picked[0]
        label = f"{m['run']} @ step {m['step']}" if m["step"] is not None else (m["run"] or m["path"])
    else:
        label = ", ".join(targets)
    return Subject(label=label, run=run, models=picked)


def detector_version(store, hashes) -> str | None:
    """The detector version whose findings a report or comparison of these checkpoints reads."""
    if not hashes:
        return DETECTOR_VERSION
    marks = ",".join("?" * len(hashes))
    found = store.query(f"SELECT f.detector_version AS v, MAX(f.created_at) AS t FROM findings f JOIN samples s "
                        f"ON s.id = f.sample_id WHERE s.weights_hash IN ({marks}) GROUP BY f.detector_version "
                        f"ORDER BY t DESC", tuple(hashes))
    versions = [r["v"] for r in found]
    # The installed detectors' findings when they exist; otherwise the newest stored ones, still readable.
    return DETECTOR_VERSION if DETECTOR_VERSION in versions or not versions else versions[0]
