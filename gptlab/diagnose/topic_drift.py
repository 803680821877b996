"""topic_drift: the later part of a prose completion is about something unrelated to the prompt.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_drift.py
    python bench/diagnose_calibrate.py          (the rule on human and other-document tails)
    python tools/drift_anchors.py               (remakes domain_anchors.json)

The measure is semantic: cosine similarity, under the all-MiniLM-L6-v2 sentence encoder (minilm.py), of
the prompt (its first PROMPT_WORDS words) and the completion's tail (its last LATE_WORDS words, at most
its second half). Figures are removed from both first: a list of numbers says nothing about the topic,
and number salad is number_fixation's business. Word-association chains ("photosynthesis -> photo ->
photographs -> cameras") keep a few surface words but lose the topic, which the encoder measures and
word overlap does not.

The failure: `drift_similarity` < DRIFT_SIMILARITY, or < MOVED_SIMILARITY when the tail reads as another
corpus domain than the prompt and is not near the prompt's own (`drift_moved_domain`: a photosynthesis prompt
answered with the astronomy textbook that the model was trained on, which MiniLM rates as a neighbour);
unless the completion is word salad in the prompt's own domain. Salad ("we will be subject to additional
income taxes ... If these clifornia are subject to taxes us, accrifications") scores low against any prompt
because it says little, not because its subject changed. It is excused (`drift_excused` names the domain)
when the prompt and the tail read as the same corpus domain and the completion coins at least one word (one
that invented_words finds, though one is not enough to fail that mode). A text reads as a domain when its
nearest domain anchor is at least DOMAIN_SIMILARITY similar to it; an anchor is the mean embedding of 300
windows of a shipped corpus domain (domain_anchors.json, made by tools/drift_anchors.py). Salad on another
domain's subject (a 10-K prompt answered with astronomy or Python) is still a drift, and so is a tail on
another subject of the same domain written in real words (a 10-K's revenue, then its cybersecurity
program: human text coins no words); a prompt on a subject no domain covers (photosynthesis, the autonomic
nervous system: 0.02-0.16 from every anchor) is read as no domain, so its drifts are never excused.

Only prose completions of >= MIN_WORDS words are judged: shorter ones have no "later part". A completion
that moves on to another 10-K Item ("Item 4. Executive Officers") is judged on the text before that
heading: the new section's subject is set by its heading, not by the prompt, and a wrong heading is
hallucinated_section's business. When a tail falls below DRIFT_SIMILARITY, the similarity of the
completion's first LATE_WORDS words to the prompt is reported too (`drift_start_similarity`), so the
evidence shows the fall.

`topic_drift_many` judges many samples in one batched pass of the encoder (what the pipeline calls);
`similarities` gives the raw measure for calibration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from gptlab.diagnose.hallucinated_section import first_heading
from gptlab.diagnose.invented_words import invented_words
from gptlab.diagnose.minilm import encoder, unavailable_reason
from gptlab.diagnose.registry import detector
from gptlab.diagnose.text import NUMBER_RE, WORD_RE, clip
from gptlab.diagnose.types import Finding

# ~ the 5th percentile of human continuations' similarity to their prompt (bench/diagnose_calibrate.py):
# below it, a tail is less related to its prompt than 95% of human ones are.
DRIFT_SIMILARITY = 0.20
# A tail that reads as another corpus domain than the prompt (`moved`) is a drift below this higher bar
# (human continuations: 4.3-8.0% below DRIFT_SIMILARITY, +0-1.0 points with this rule; docs/failure_modes.md).
MOVED_SIMILARITY = 0.25
MIN_WORDS = 40
LATE_WORDS = 64         # the tail; chosen with bench/diagnose_calibrate.py (separation per encoder second)
PROMPT_WORDS = 80
PROMPT_TOKENS = 128     # word pieces; PROMPT_WORDS of English is ~100
LATE_TOKENS = 96        # LATE_WORDS of English is ~80
# 84-86% of human 10-K prompts and tails read as finance_sec at this similarity (71-77% of the astronomy
# textbook as web_en; bench/diagnose_calibrate.py's pairs, shipped corpus); the real set's encyclopedic
# prompts are at most 0.16 from any anchor.
DOMAIN_SIMILARITY = 0.30
ANCHORS = Path(__file__).with_name("domain_anchors.json")


@dataclass
class DriftWindows:
    prompt: str
    late: str
    early: str
    late_offset: int


def _topic_text(text: str) -> str:
    return " ".join(NUMBER_RE.sub(" ", text).split())


def _word_spans(text: str) -> list[tuple[int, int]]:
    """Words that are not figures: windows are measured in words that carry a topic."""
    return [(m.start(), m.end()) for m in WORD_RE.finditer(text) if not m.group()[0].isdigit()]


def windows(prompt: str, completion: str) -> DriftWindows | str:
    """The texts to compare, or the reason the sample is not judged."""
    heading = first_heading(completion)
    if heading is not None:
        completion = completion[:heading.start()]
    spans = _word_spans(completion)
    if len(spans) < MIN_WORDS:
        if heading is not None:
            return (f"the completion moves on to another 10-K section after {len(spans)} words "
                    f"({clip(heading.group().strip(), 40)!r}); drift is judged within the prompt's section, "
                    f"from {MIN_WORDS} words")
        return f"completion has {len(spans)} words; drift is judged from {MIN_WORDS}"
    p_spans = [end for _, end in _word_spans(prompt)]
    if len(p_spans) < 3:
        return "prompt has fewer than 3 words"
    n_late = min(LATE_WORDS, len(spans) // 2)
    late_start = spans[-n_late][0]
    return DriftWindows(prompt=prompt[:p_spans[min(PROMPT_WORDS, len(p_spans)) - 1]],
                        late=completion[late_start:], early=completion[:spans[n_late - 1][1]],
                        late_offset=late_start)


class _Cosines:
    """Embeds each distinct text once (prompts repeat across samples; at temperature 0 so do tails)."""

    def __init__(self, model):
        self.model, self.vectors = model, {}

    def add(self, texts: list[str], max_tokens: int):
        todo = sorted({_topic_text(t) for t in texts} - set(self.vectors))
        if todo:
            self.vectors.update(zip(todo, self.model.embed(todo, max_tokens=max_tokens)))

    def __call__(self, a: str, b: str) -> float:
        return float(self.vectors[_topic_text(a)] @ self.vectors[_topic_text(b)])


@lru_cache(maxsize=1)
def _anchors() -> tuple[list[str], np.ndarray]:
    anchors = json.loads(ANCHORS.read_text(encoding="utf-8"))["anchors"]
    return list(anchors), np.array(list(anchors.values()), dtype=np.float32)


def domain_of(vector: np.ndarray) -> str | None:
    """The corpus domain an embedded text reads as: its nearest anchor, if at least DOMAIN_SIMILARITY."""
    names, matrix = _anchors()
    sims = matrix @ vector
    return names[int(sims.argmax())] if sims.max() >= DOMAIN_SIMILARITY else None


def similarities(pairs: list[tuple[str, str]]) -> list[float | None]:
    """drift_similarity for each (prompt, completion); None where drift is not judged or the encoder is
    missing. (Calibration uses this; diagnosis uses topic_drift_many.)"""
    model = encoder()
    wins = [windows(p, c) for p, c in pairs]
    if model is None:
        return [None] * len(pairs)
    cos = _Cosines(model)
    judged = [w for w in wins if not isinstance(w, str)]
    cos.add([w.prompt for w in judged], PROMPT_TOKENS)
    cos.add([w.late for w in judged], LATE_TOKENS)
    return [None if isinstance(w, str) else cos(w.prompt, w.late) for w in wins]


def shared_domain(cos: _Cosines, w: DriftWindows) -> str | None:
    """The corpus domain that both the prompt and the tail read as, or None."""
    prompt_domain = domain_of(cos.vectors[_topic_text(w.prompt)])
    if prompt_domain is None or domain_of(cos.vectors[_topic_text(w.late)]) != prompt_domain:
        return None
    return prompt_domain


def moved(cos: _Cosines, w: DriftWindows) -> bool:
    """The tail reads as a corpus domain that the prompt does not read as (and is not near the prompt's
    domain either): a photosynthesis prompt answered with the astronomy textbook, a 10-K with Go."""
    names, matrix = _anchors()
    tail = matrix @ cos.vectors[_topic_text(w.late)]
    prompt = domain_of(cos.vectors[_topic_text(w.prompt)])
    return tail.max() >= DOMAIN_SIMILARITY and (prompt is None or tail[names.index(prompt)] < DOMAIN_SIMILARITY)


def finding_from_similarity(similarity: float, start_similarity: float | None, w: DriftWindows,
                            excused: str | None = None, moved_domain: bool = False) -> Finding:
    metrics = {"drift_similarity": round(similarity, 3)}
    if start_similarity is not None:
        metrics["drift_start_similarity"] = round(start_similarity, 3)
    if excused:
        metrics["drift_excused"] = f"word salad in the prompt's domain ({excused})"
    if moved_domain:   # the caller found it below MOVED_SIMILARITY, into another domain
        metrics["drift_moved_domain"] = True
    if similarity >= DRIFT_SIMILARITY and not moved_domain or excused:
        return Finding(False, metrics)
    evidence = {"similarity": round(similarity, 3), "late_span": clip(w.late, 200), "offset": w.late_offset}
    if start_similarity is not None:
        evidence["start_similarity"] = metrics["drift_start_similarity"]
    return Finding(True, metrics, evidence)


def coins_a_word(found: Finding) -> bool:
    """invented_words' finding shows at least one coined lower-case word (not only a failure: salad that falls
    below the bar in its own domain needs no more than one word the list lacks to show it is salad)."""
    return found.failed or found.metrics.get("invented_words", 0) >= 1


def topic_drift_many(pairs: list[tuple[str, str]], coins_words: list[bool] | None = None) -> list[Finding | str]:
    """For each (prompt, completion): a Finding, or a string saying why drift was not judged. `coins_words`:
    whether each completion coins a word (coins_a_word), where the caller has it (the pipeline); else computed
    here, for the samples that need it.

    One batched pass over every distinct prompt and tail; the starts are embedded afterwards, only for
    the samples that drift (evidence, not a decision)."""
    wins = [windows(p, c) for p, c in pairs]
    judged = [i for i, w in enumerate(wins) if not isinstance(w, str)]
    if not judged:
        return list(wins)
    model = encoder()
    if model is None:
        reason = f"unavailable: {unavailable_reason()}"
        return [w if isinstance(w, str) else reason for w in wins]
    cos = _Cosines(model)
    cos.add([wins[i].prompt for i in judged], PROMPT_TOKENS)
    cos.add([wins[i].late for i in judged], LATE_TOKENS)
    sims = {i: cos(wins[i].prompt, wins[i].late) for i in judged}
    moves = {i for i in judged if DRIFT_SIMILARITY <= sims[i] < MOVED_SIMILARITY and moved(cos, wins[i])}
    low = {i for i in judged if sims[i] < DRIFT_SIMILARITY} | moves
    cos.add([wins[i].early for i in sorted(low)], LATE_TOKENS)
    out = list(wins)
    for i in judged:
        start = excused = None
        if i in low:   # word salad in the prompt's own domain is excused (the module docstring)
            start = cos(wins[i].prompt, wins[i].early)
            domain = shared_domain(cos, wins[i])
            if domain and (coins_words[i] if coins_words is not None else coins_a_word(invented_words(*pairs[i]))):
                excused = domain
        out[i] = finding_from_similarity(sims[i], start, wins[i], excused, moved_domain=i in moves)
    return out


@detector("topic_drift", scope="prose")
def topic_drift(prompt: str, completion: str) -> Finding | str:
    """One sample (loads the encoder on first use); see topic_drift_many for many."""
    return topic_drift_many([(prompt, completion)])[0]
