"""Runs every detector on a sample and assembles its Diagnosis; many samples in three batched phases.

    gptlab diagnose samples.jsonl [--json]
    python bench/diagnose.py            (10,000 samples)
    python -m pytest tests/test_diagnose_registry.py tests/test_diagnose_code.py

Which detectors judge which sample (each mode's scope is declared with its detector: registry.py, modes.py):
* all samples: prompt_echo, repetition_loop;
* prose (no `language`): word_fixation, number_fixation, topic_drift, invented_words, malformed_figure, and
  hallucinated_section when the text is finance-like (hallucinated_section.applies);
* code (`language` given): no_code, then on the program (program.py) syntax_error, then
  missing_requirement (with `requires`, or a SQL `schema`) and test_failure (with `tests`).
  The code checks form a chain: a completion without code is not also reported as a syntax error, and a
  program that does not parse is not executed (it counts as not passed for pass@k).
A mode that was not judged is listed with the reason in `metrics["not_checked"]`, never silently passed.

diagnose_many: phase 1 runs the per-sample detectors (in worker processes for large batches), phase 2
embeds all drift windows in one batched pass of the sentence encoder in this process, phase 3 runs the
tests in the sandbox (sandbox.run_many, parallel).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from gptlab.diagnose.hallucinated_section import applies as finance_text, hallucinated_section
from gptlab.diagnose.invented_words import invented_words
from gptlab.diagnose.malformed_figure import malformed_figure
from gptlab.diagnose.missing_requirement import missing_requirement
from gptlab.diagnose.modes import CODE_MODES, MODES, PROSE_MODES
from gptlab.diagnose.no_code import no_code
from gptlab.diagnose.number_fixation import number_fixation
from gptlab.diagnose.program import build_program
from gptlab.diagnose.prompt_echo import prompt_echo
from gptlab.diagnose.repetition_loop import repetition_loop
from gptlab.diagnose.syntax_error import parse, syntax_error
from gptlab.diagnose.test_failure import RUNNABLE, judge_test_outcome, sandbox_job
from gptlab.diagnose.topic_drift import coins_a_word, topic_drift_many
from gptlab.diagnose.types import LANGUAGES, Diagnosis, Finding, Sample, normalise
from gptlab.diagnose.word_fixation import word_fixation
from gptlab.sandbox import isolation, run_many

_POOL_MIN = 400    # below this many samples, starting worker processes costs more than it saves


@dataclass
class _Partial:
    """A sample after phase 1: what is decided, and what phases 2 and 3 still have to do."""
    id: str
    findings: dict = field(default_factory=dict)
    not_checked: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)
    passed: bool | None = None
    drift_pair: tuple[str, str] | None = None
    test: dict | None = None


def _analyse(sample: Sample, execute: bool, unsafe_exec: bool, runnable: bool) -> _Partial:
    s, notes = normalise(sample)
    out = _Partial(s.id)
    if notes:
        out.evidence["input"] = notes
    out.metrics["completion_chars"] = len(s.completion)
    out.findings["prompt_echo"] = prompt_echo(s.prompt, s.completion, code=s.language is not None)
    out.findings["repetition_loop"] = repetition_loop(s.completion, code=s.language is not None)
    if s.language is None:
        _prose(s, out)
        for mode in CODE_MODES:
            out.not_checked[mode] = "no language: judged as prose"
    else:
        for mode in PROSE_MODES:
            out.not_checked[mode] = "prose mode; this is a code sample"
        _code(s, out, execute, unsafe_exec, runnable)
    return out


def _prose(s: Sample, out: _Partial):
    out.findings["word_fixation"] = word_fixation(s.completion)
    out.findings["number_fixation"] = number_fixation(s.prompt, s.completion)
    out.findings["invented_words"] = invented_words(s.prompt, s.completion)
    out.findings["malformed_figure"] = malformed_figure(s.completion)
    if finance_text(s.domain, s.prompt):
        out.findings["hallucinated_section"] = hallucinated_section(s.completion)
    else:
        out.not_checked["hallucinated_section"] = "not finance text (domain, 10-K or Item heading in prompt)"
    out.drift_pair = (s.prompt, s.completion)     # judged in phase 2, batched


def _code(s: Sample, out: _Partial, execute: bool, unsafe_exec: bool, runnable: bool):
    if s.language not in LANGUAGES:
        for mode in CODE_MODES:
            out.not_checked[mode] = f"unsupported language {s.language!r} (supported: {', '.join(LANGUAGES)})"
        return
    program = build_program(s.code_prefix, s.completion, s.language)
    found = no_code(program, s.language)
    out.findings["no_code"] = found
    failed_before = "the completion has no code" if found.failed else None
    if not failed_before:
        parsed = parse(program.text, s.language)
        if not parsed.ok and program.cut is None and program.later_definitions:
            shorter = program.without_tail()
            retry = parse(shorter.text, s.language)
            if retry.ok:
                program, parsed = shorter, retry
        out.findings["syntax_error"] = syntax_error(parsed, program.prefix.count("\n"))
        if not parsed.ok:
            failed_before = "the program does not parse"
    else:
        out.not_checked["syntax_error"] = failed_before
    out.metrics.update(program.metrics())
    if failed_before:
        out.not_checked["missing_requirement"] = failed_before
        if s.tests:
            out.not_checked["test_failure"] = f"not run: {failed_before}"
            # a known failure counts for pass@k only where the others' tests can run too, or pass@k
            # would be computed from the failures alone
            out.passed = False if runnable and s.language in RUNNABLE else None
        else:
            out.not_checked["test_failure"] = "no tests"
        return
    if s.requires or (s.language == "sql" and s.schema):
        out.findings["missing_requirement"] = missing_requirement(parsed.tree, program.text, s.language,
                                                                  s.requires, s.schema)
    else:
        out.not_checked["missing_requirement"] = "no requires or schema" if s.language == "sql" else "no requires"
    if not s.tests:
        out.not_checked["test_failure"] = "no tests"
    elif not execute:
        out.not_checked["test_failure"] = "not run: execution disabled (--no-exec)"
    else:
        job = sandbox_job(s, program.text, unsafe_exec=unsafe_exec)
        if isinstance(job, str):
            out.not_checked["test_failure"] = job
        else:
            out.test = job


def _analyse_safely(sample: Sample, *flags) -> _Partial:
    """One sample that trips a detector bug costs that sample's row, not a run over thousands."""
    try:
        return _analyse(sample, *flags)
    except Exception as e:  # noqa: BLE001 - reported in the sample's evidence, with the exception
        out = _Partial(str(getattr(sample, "id", "?")))
        out.evidence["internal_error"] = f"{type(e).__name__}: {e} (please report: gptlab diagnose bug)"
        out.not_checked = {m: "internal error" for m in MODES}
        return out


def _analyse_chunk(args) -> list[_Partial]:
    samples, *flags = args
    return [_analyse_safely(s, *flags) for s in samples]


def _finish(p: _Partial) -> Diagnosis:
    metrics, evidence = dict(p.metrics), dict(p.evidence)
    failures = []
    for mode in MODES:
        f = p.findings.get(mode)
        if f is None:
            continue
        metrics.update(f.metrics)
        if f.failed:
            failures.append(mode)
            evidence[mode] = f.evidence or {}
    if p.not_checked:
        metrics["not_checked"] = {m: p.not_checked[m] for m in MODES if m in p.not_checked}
    return Diagnosis(p.id, failures, metrics, evidence, p.passed)


def diagnose(sample: Sample, *, execute: bool = True, unsafe_exec: bool = False) -> Diagnosis:
    return diagnose_many([sample], execute=execute, unsafe_exec=unsafe_exec, workers=1)[0]


def diagnose_many(samples, *, execute: bool = True, unsafe_exec: bool = False, workers: int | None = None,
                  progress=None) -> list[Diagnosis]:
    """Diagnoses in input order. `progress(done, total, phase)` is called as work completes."""
    samples = list(samples)
    workers = workers or os.cpu_count() or 1
    # Whether tests can run here at all: if not, a known failure (no code, no parse) is not counted as
    # "not passed" either, so that pass@k is never computed from the failures alone.
    runnable = execute and any(s.tests for s in samples) and (unsafe_exec or isolation() is not None)
    partials = _phase1(samples, (execute, unsafe_exec, runnable), workers, progress)
    _phase2_drift(partials, progress)
    _phase3_tests(partials, workers, progress)
    return [_finish(p) for p in partials]


def _phase1(samples, flags, workers, progress) -> list[_Partial]:
    total = len(samples)
    if workers <= 1 or total < _POOL_MIN:
        out = []
        for i, s in enumerate(samples):
            out.append(_analyse_safely(s, *flags))
            if progress and (i + 1) % 100 == 0:
                progress(i + 1, total, "detectors")
        return out
    size = max(50, total // (workers * 8))
    chunks = [(samples[i:i + size], *flags) for i in range(0, total, size)]
    # forkserver: the workers never inherit torch's threads or the sandbox's, whatever the caller loaded
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["gptlab.diagnose.pipeline"])
    out = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        for part in pool.map(_analyse_chunk, chunks):
            out.extend(part)
            if progress:
                progress(len(out), total, "detectors")
    return out


def _phase2_drift(partials: list[_Partial], progress):
    todo = [p for p in partials if p.drift_pair is not None]
    if not todo:
        return
    if progress:
        progress(0, len(todo), "topic drift")
    coins = [coins_a_word(p.findings["invented_words"]) for p in todo]     # phase 1's, not computed again
    for p, result in zip(todo, topic_drift_many([p.drift_pair for p in todo], coins)):
        if isinstance(result, Finding):
            p.findings["topic_drift"] = result
        else:
            p.not_checked["topic_drift"] = result
        p.drift_pair = None
    if progress:
        progress(len(todo), len(todo), "topic drift")


def _phase3_tests(partials: list[_Partial], workers: int, progress):
    todo = [p for p in partials if p.test is not None]
    if not todo:
        return
    if progress:
        progress(0, len(todo), "tests")
    results = run_many([p.test for p in todo], workers=workers)
    for p, result in zip(todo, results):
        finding, p.passed, note = judge_test_outcome(result)
        p.metrics["tests"] = note
        if finding is None:
            p.not_checked["test_failure"] = note
        else:
            p.findings["test_failure"] = finding
        p.test = None
    if progress:
        progress(len(todo), len(todo), "tests")
