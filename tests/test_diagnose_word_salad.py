"""invented_words and the copied-sentence rule of prompt_echo, on texts a reader can check by eye.

    python -m pytest tests/test_diagnose_word_salad.py
"""

from gptlab.diagnose import Sample, diagnose
from gptlab.diagnose.invented_words import INVENTED_MIN, invented_words, is_english, near_miss
from gptlab.diagnose.prompt_echo import prompt_echo

HUMAN = ("Photosynthesis is the process by which green plants and some other organisms use sunlight to "
         "synthesize foods from carbon dioxide and water. In plants it takes place in the chloroplasts, whose "
         "pigments absorb red and blue light; the oxygen it releases is a by-product. The first telescope is "
         "credited to Lippershey, a spectacle maker in Middelburg (see www.hdsupply.com or getItem_2).")

# What a tiny model wrote under a general-knowledge prompt (from the real-output set): fragments glued together.
SALAD = ("The cells of the leaf are produced by a photosyntic elifailable of stripwritable pations, and the "
         "dritable sugar is asert to the iequence of mostbj water in the roots.")


def test_human_prose_with_names_urls_and_identifiers_is_not_invented():
    f = invented_words("Explain photosynthesis.", HUMAN)
    assert not f.failed
    assert f.metrics["invented_words"] == 0 and f.metrics["checked_words"] > 30


def test_glued_fragments_are_invented_words_with_the_words_as_evidence():
    f = invented_words("Explain photosynthesis.", SALAD)
    assert f.failed
    assert {"elifailable", "stripwritable", "iequence", "dritable"} <= set(f.evidence["words"])
    assert f.evidence["count"] >= INVENTED_MIN and f.metrics["invented_share"] >= 0.2


def test_the_prompts_own_words_and_inflections_of_real_words_are_not_invented():
    assert is_english("spyglasses") and is_english("reemitted") and is_english("ecosystem's")
    assert not is_english("cirly") and not is_english("elifailable")
    f = invented_words("Describe the frobnix and the glarbit.", "The frobnix feeds the glarbit, and the "
                       "glarbit feeds the frobnix; frobnix and glarbit are the whole story here.")
    assert not f.failed and f.metrics["invented_words"] == 0


def test_a_name_at_a_sentence_start_is_checked_but_one_word_is_not_a_failure():
    f = invented_words("Who made the first telescope?", "Lippershey made it in Middelburg, from two lenses.")
    assert f.metrics["invented_words"] == 1 and not f.failed


def test_one_typo_is_not_a_failure():
    f = invented_words("Describe water.", "Water covers most of the Earth and is essential to all knwon "
                       "forms of life, which depend on it for their chemistry and their temperature.")
    assert f.metrics["invented_words"] == 1 and not f.failed


def test_invented_words_is_a_prose_mode_in_the_diagnosis():
    prose = diagnose(Sample(id="p", domain="general", prompt="Explain photosynthesis.", completion=SALAD),
                     execute=False)
    assert "invented_words" in prose.failures
    code = diagnose(Sample(id="c", domain="code", prompt="# add\n", completion="def add(a, b):\n    return a + b\n",
                           language="python", code_prefix=""), execute=False)
    assert "invented_words" in code.metrics["not_checked"]


def test_a_whole_short_sentence_of_the_prompt_copied_is_an_echo():
    prompt = ("Write a Python function that returns the squares of a list. The function does not take any "
              "additional arguments. Use a list comprehension.")
    copied = "Here it is. The function does not take any additional arguments. def f(xs): return xs"
    f = prompt_echo(prompt, copied, code=True)
    assert f.failed and f.metrics["echo_sentence_words"] == 8
    assert f.evidence["span"].startswith("The function does not take any additional arguments")
    # the same words without the whole sentence (a fragment) are not an echo
    assert not prompt_echo(prompt, "It does not take any additional input.", code=True).failed


# What a small model wrote under 10-K risk-factor prompts (the real-output set's tuning half): coined words
# made of a rare list entry plus an inflection ("cauts" = "caut" + s) are invented.
RARE_STEMS = ("Our business infrastructure and systems are also edmediate, integrating firs with a security, and "
              "direct sigurement in the cauts and densing caps with sinking our systems and the sustes of our "
              "associates.")
HUMAN_10K = ("Unamortized debt issuance costs are presented as a reduction of the carrying amount of the notes. "
             "The churches, heroes and watches of the region appear in our boxes of spyglasses, which we reemitted "
             "to the sortation centers of our retailers.")


def test_an_inflection_excuses_a_word_only_when_its_stem_is_a_common_word():
    assert not is_english("cauts") and not is_english("sustes") and not is_english("speares")
    assert is_english("unamortized") and is_english("churches") and is_english("heroes")
    f = invented_words("Item 1A. Risk Factors", RARE_STEMS)
    assert f.failed and {"cauts", "sustes", "sigurement", "edmediate"} <= set(f.evidence["words"])
    assert invented_words("Item 7. Management's Discussion", HUMAN_10K).metrics["invented_words"] == 0


# A prose probe answered with code junk (the real set's nanochat samples): the coined parts of glued tokens count.
GLUED_JUNK = (" emptygndexError file10**p{e > 5), and ( text seledelher127')\n        Decimal('2'))\n"
              "        return context =is_special:\n        if self._int, file in prec, areamcc_N= 310):\n")
HUMAN_IDENTIFIERS = ("Revenue from snake_case_name tools rose 12% as McKesson and COVID19 testing partners, utf8 "
                     "encoders and the getItem_2 API (see api_v2.example.com) shipped 3Q22 upgrades to devices.")


def test_coined_parts_of_glued_tokens_are_checked_and_real_identifiers_pass():
    f = invented_words("Why does water expand when it freezes?", GLUED_JUNK)
    assert f.failed and {"emptygndex", "seledelher", "areamcc"} <= set(f.evidence["words"])
    g = invented_words("Explain the quarter.", HUMAN_IDENTIFIERS)
    assert not g.failed and g.metrics["invented_words"] == 0



# Python's own names in prose are real code names, not coined words; a token glued from them is coined.
PYTHON_NAMES = ("The value is checked with isinstance and read with getattr, the files are listed by listdir "
                "and the results chained with itertools before setattr stores them under getcontext and tzoff.")
GLUED_NAMES = "The value is importos and the returnnonex of the listdirx, chained by getattrs in selfsign."


def test_pythons_own_names_are_not_invented_but_words_glued_from_them_are():
    f = invented_words("How does water move through a plant?", PYTHON_NAMES)
    assert not f.failed and f.metrics["invented_words"] == 0
    g = invented_words("How does water move through a plant?", GLUED_NAMES)
    assert g.failed and {"importos", "returnnonex", "listdirx", "selfsign"} <= set(g.evidence["words"])

# Capitalised words inside a sentence may be names: checked only where the text already coins lower-case words.
CAPITALISED_SALAD = ("Our revenue from the Vorbentic programs and the Galdrest segment grew, while the plurnished "
                     "margin of our products declined in the year as costs rose.")
HUMAN_NAMES = ("The Ghassanid ruler was called a phylarch by the emperor, and the tribes settled in Al-Hirah "
               "under Za Kusay; competing brands include Halog® and Elocon®, sold by Westwood Squibb in Ohio.")


def test_a_lone_capitalised_word_counts_only_in_a_text_that_coins_lower_case_words():
    f = invented_words("Describe the quarter's revenue.", CAPITALISED_SALAD)
    assert f.failed and {"vorbentic", "galdrest", "plurnished"} <= set(f.evidence["words"])
    without = CAPITALISED_SALAD.replace("plurnished", "gross")
    g = invented_words("Describe the quarter's revenue.", without)
    assert not g.failed and g.metrics["invented_words"] == 0


def test_names_beside_a_capitalised_word_a_hyphen_or_a_brand_mark_are_not_checked():
    # "phylarch" is not in the word list, so lone capitalised words are checked; these names are not lone:
    # after "The" (capitalised), hyphen-joined ("Al-Hirah"), after "Za", before a brand mark, or before "Squibb"
    f = invented_words("Describe the Arab kingdoms.", HUMAN_NAMES)
    assert f.metrics["invented_words"] == 1 and not f.failed
    g = invented_words("Describe the Arab kingdoms.", HUMAN_NAMES.replace("Za Kusay", "the Kusay"))
    assert g.metrics["invented_words"] == 2


def test_a_rare_list_word_one_letter_from_a_frequent_word_is_a_near_miss():
    assert near_miss("shole") and near_miss("reate") and not is_english("shole")
    assert not near_miss("whole") and not near_miss("canceller") and is_english("canceller")
    assert near_miss("sharding") and is_english("sharding")     # an inflection of "shard" still excuses it
    assert not near_miss("sestronauts")                          # not in the list: invented anyway
    f = invented_words("Describe the Moon.", "We call the shole craters in a reate way, the Moon and the Sun "
                       "being the largest bodies in the sky that anyone can see at night.")
    assert f.failed and set(f.evidence["words"]) == {"shole", "reate"}


def test_one_coined_word_that_makes_a_tiny_text_is_enough():
    # a character-level model's 48 characters: one coined word is a quarter or more of what can be checked
    f = invented_words("Describe the risks of our business.", ' re<# 3: the """ herourinorncegenrort ite')
    assert f.failed and f.evidence["words"] == ["herourinorncegenrort"]
    # a short human answer whose only unknown word is a capitalised name is not
    g = invented_words("Who made the first telescope?", "Lippershey made it in Middelburg, from two lenses.")
    assert not g.failed


# Real output (tests/data/diagnose_real_fresh2.jsonl, a depth-6 gptlab model): two coined words among 35 that can
# be checked (5.7%), which the readers label and version 10's 6% share missed.
TWO_IN_THIRTY_FIVE = (
    " light-spector and 4 million.1 others 8 (1, 3z) over their light source (including the light is the "
    "universe). These agoodies were refract—though the planets we all perspectives, it has been started by the "
    "power, and the distant water. Through what is not from those vibraries start")


def test_two_coined_words_in_a_short_answer_fail_from_a_five_percent_share():
    f = invented_words("Water is a molecule made of two hydrogen atoms and one oxygen atom.", TWO_IN_THIRTY_FIVE)
    assert f.failed and set(f.evidence["words"]) == {"agoodies", "vibraries"}
    assert 0.05 <= f.evidence["share"] < 0.06


def test_one_coined_word_in_ten_checked_is_enough():
    # llm.c's tiny model under a 10-K prompt (tests/data/diagnose_real.jsonl): code junk with one glued token
    junk = ("(\n          (sign(n\n        a\n\n       \n       self copyMAPPING _is)._ it\n        provide return ['_ "
            "continually\n       , if \"\"\"torot the raise))other []_ returnself the which\n               ._: the\n")
    prompt = ("Item 7. Management's Discussion and Analysis of Financial Condition and Results of Operations\n\n"
              "Revenue\n\nTotal revenue for fiscal 2023 was $4.2 billion, an increase of 12% compared with fiscal "
              "2022. The increase was primarily driven by")
    f = invented_words(prompt, junk)
    assert f.failed and f.evidence["words"] == ["returnself"] and f.metrics["checked_words"] <= 10


def test_letter_soup_of_one_and_two_letter_runs_fails():
    # nanoGPT's character-level model under a 10-K prompt (tests/data/diagnose_real_fresh3.jsonl): too few runs
    # of >= 3 letters to check, but "y", "j", "s", "u" are no English words
    f = invented_words("Describe the differences between IFRS and US GAAP.",
                       "an  y\n is         oden  it j      s u oden  sint")
    assert f.failed and f.evidence["fragments"] == ["j", "s", "u", "y"]
    # human text's short runs are words, units, abbreviations and numerals, and few among many words
    human = ("The probe is 12 cm long and weighs 3 kg; it flew 400 km, as et al. reported in volume II of the "
             "survey, and the signal rose by a factor of two in each of the runs we made at the site. The team "
             "then moved the instrument to a colder room, where the readings settled within an hour and stayed "
             "flat for the rest of the week.")
    g = invented_words("Describe the probe.", human)
    assert not g.failed and g.metrics["fragments"] >= 3
