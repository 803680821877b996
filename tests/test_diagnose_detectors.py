"""The prose detectors one by one: each fails what its definition names and passes its hard negatives."""

import pytest

from gptlab.diagnose.hallucinated_section import applies, hallucinated_section
from gptlab.diagnose.io import sample_from_dict
from gptlab.diagnose.malformed_figure import malformed_figure
from gptlab.diagnose.number_fixation import number_fixation
from gptlab.diagnose.prompt_echo import ECHO_WORDS_CODE, ECHO_WORDS_PROSE, prompt_echo
from gptlab.diagnose.repetition_loop import repetition_loop
from gptlab.diagnose.types import MAX_CHARS, Sample, clean_text, normalise
from gptlab.diagnose.word_fixation import word_fixation

PROMPT = ("The autonomic nervous system is the part of the nervous system that controls involuntary functions "
          "such as heart rate, digestion and breathing. It is divided into")


# ---------------------------------------------------------------- prompt_echo

def test_echo_reports_the_copied_span_and_its_length():
    copy = ("The autonomic nervous system is the part of the nervous system that controls involuntary functions "
            "such as heart rate")
    f = prompt_echo(PROMPT, " two parts. " + copy + " and more.")
    assert f.failed
    assert f.metrics["echo_words"] == len(copy.split())
    assert f.evidence["span"] == copy
    assert f.evidence["prompt_offset"] == 0


def test_echo_threshold_is_in_words_and_differs_for_code():
    words = PROMPT.split()
    short = " ".join(words[:ECHO_WORDS_CODE])          # long enough for a code probe, not for prose
    assert prompt_echo(PROMPT, "x " + short, code=True).failed
    assert not prompt_echo(PROMPT, "x " + short).failed
    assert prompt_echo(PROMPT, "x " + " ".join(words[:ECHO_WORDS_PROSE])).failed


def test_stock_phrases_and_identifiers_are_not_echo():
    prompt = "def quicksort(arr):\n    \"\"\"Sort arr in ascending order.\"\"\"\n"
    code = "    if len(arr) <= 1:\n        return arr\n    return quicksort([x for x in arr[1:]])\n"
    assert not prompt_echo(prompt, code, code=True).failed


def test_a_short_prompt_copied_whole_is_echo():
    prompt = "The invention of the printing press by Johannes Gutenberg around 1440 transformed European society."
    f = prompt_echo(prompt, " " + prompt + " Books became cheaper, and more people learned to read.")
    assert f.failed and f.metrics["echo_words"] == 14      # below the 18 words that long prompts need
    assert not prompt_echo(prompt, " Gutenberg around 1440 transformed European society with books.").failed


def test_whole_prompt_repeated_gets_a_hint():
    f = prompt_echo(PROMPT, PROMPT + " two branches.")
    assert f.failed and "strip the prompt" in f.evidence["hint"]


# ---------------------------------------------------------------- repetition_loop

def test_sentence_loop_in_prose():
    text = "Stir well and add a pinch of salt. " * 5
    f = repetition_loop(text)
    assert f.failed
    assert f.evidence["copies"] >= 4
    assert "pinch of salt" in f.evidence["unit"]


def test_scattered_repeats_of_one_phrase():
    phrase = "the company may not be able to raise capital"
    fillers = ["Sales grew in Europe.", "Our margins were stable through the year.",
               "We opened two plants and closed one.", "Costs of raw materials rose sharply.",
               "The board met eleven times."]
    text = " ".join(f"{filler} Analysts warned that {phrase}." for filler in fillers)
    f = repetition_loop(text)
    assert f.failed
    assert f.evidence["count"] == 5
    assert f.evidence["phrase"] in "analysts warned that " + phrase


def test_code_block_copies_that_differ_only_in_a_number():
    blocks = "".join(f"\ndef sort_{i}(arr):\n    arr.sort(quicksort)\n    return arr\n" for i in range(2, 7))
    assert repetition_loop("    return quicksort(left) + right\n" + blocks, code=True).failed


def test_lines_that_grow_each_time_are_a_loop():
    lines = "".join(f"print(f([{', '.join(map(str, range(k)))}]))\n" for k in range(2, 9))
    f = repetition_loop("    return [x * x for x in xs]\n" + lines, code=True)
    assert f.failed and f.evidence["copies"] >= 6


def test_legit_repetition_is_not_a_loop():
    imports = "import os\nimport sys\nimport json\nimport time\nimport re\nimport math\n"
    assert not repetition_loop(imports, code=True).failed
    go = ("\tif err != nil {\n\t\treturn nil, err\n\t}\n\tx, err := parse(b)\n"
          "\tif err != nil {\n\t\treturn nil, err\n\t}\n\ty, err := load(x)\n"
          "\tif err != nil {\n\t\treturn nil, err\n\t}\n\treturn y, nil\n}\n")
    assert not repetition_loop(go, code=True).failed
    figures = "Revenue was 1.8, 1.5, 2.3, 4.1, 0.9, 3.3 and 2.2 billion in the seven regions."
    assert not repetition_loop(figures).failed


def test_three_like_lines_are_an_unrolled_list_but_a_sentence_said_five_times_is_a_loop():
    unrolled = ("  return (\n    <ul>\n      <li>{tags[0]}</li>\n      <li>{tags[1]}</li>\n"
                "      <li>{tags[2]}</li>\n    </ul>\n  );\n}\n")
    assert not repetition_loop(unrolled, code=True).failed
    assert repetition_loop(unrolled.replace("<li>{tags[2]}</li>\n", "<li>{tags[2]}</li>\n<li>{tags[3]}</li>\n"),
                           code=True).failed                         # four lines: LINE_COPIES
    said = "You can call it anywhere. " + "The function returns a promise, so you need to await it. " * 5
    assert repetition_loop(said, code=True).failed                    # copies within one line
    handlers = "    try:\n        return a / b\n" + "    except ZeroDivisionError:\n        return None\n" * 6
    assert repetition_loop(handlers, code=True).failed                # a short unit, copied six times
    assert not repetition_loop(handlers.replace(
        "    except ZeroDivisionError:\n        return None\n" * 6,
        "    except ZeroDivisionError:\n        return None\n" * 2 + "    finally:\n        log(a, b)\n"),
        code=True).failed


def test_a_phrase_of_figures_only_is_number_fixation_not_a_loop():
    table = "Asia Pacific 692 692 692\n" + "692 " * 40 + "\n"
    assert not repetition_loop(table).failed
    assert number_fixation("Revenue was 692 million.", table).failed


def test_a_run_of_one_figure_is_not_a_prose_loop_but_a_sentence_with_figures_is():
    times = "High water was at 10:42, 10:42, 10:42, 23:06, 10:42, 10:42 and 10:42 that week."
    assert not repetition_loop(times).failed
    sentence = "Revenue was $5 million in 2023. " * 4
    f = repetition_loop("In the year under review. " + sentence)
    assert f.failed and "Revenue was $5 million" in f.evidence["unit"]


# ---------------------------------------------------------------- word_fixation / number_fixation

def test_word_fixation_counts_plural_and_possessive_together():
    text = ("Our ecosystem matters. The ecosystem's partners leave the ecosystem, and ecosystems shrink. We fund "
            "the ecosystem, the ecosystem grows, the ecosystem pays, and our ecosystem wins.")
    f = word_fixation(text)
    assert f.failed and f.evidence["word"] == "ecosystem" and f.evidence["count"] == 8


def test_a_word_that_labels_numbered_things_is_not_word_fixation():
    toc = "\n".join(f"Item {n}. {title}" for n, title in (
        ("1", "Business"), ("1A", "Risk Factors"), ("1B", "Unresolved Staff Comments"), ("1C", "Cybersecurity"),
        ("2", "Properties"), ("3", "Legal Proceedings"), ("4", "Mine Safety Disclosures"), ("5", "Market"),
        ("6", "Reserved"), ("7", "Management's Discussion")))
    f = word_fixation(toc)
    assert not f.failed and f.metrics["top_word"] != "item"
    prose = "Risk risk risk and more risk: the risk of risk, risk upon risk, and risk again in risk terms."
    assert word_fixation(prose).failed     # the same word not followed by a number still counts


def test_word_fixation_counts_a_sentence_said_over_and_over_once():
    sentence = ("We believe that our cash and cash equivalents, together with cash generated from operations, "
                "will be sufficient. ")
    looped = "We had $85.0 million of restricted cash. " + sentence * 4
    f = word_fixation(looped)
    assert not f.failed and f.metrics["repeated_sentences"] == 3 and f.metrics["top_word_count"] == 4
    shuffled = ("Tardigrades survive freezing. They survive because they survive. They survive extreme "
                "conditions because they survive extreme conditions. " + "Because they survive extreme conditions "
                "they survive extreme conditions. " * 4)
    assert not word_fixation(shuffled).failed and word_fixation(shuffled).metrics["repeated_sentences"] == 4
    varied = ("Cash rose. Our cash pays suppliers. Cash flows from cash sales fund cash reserves. "
              "Cash is king, and the cash ratio tracks cash. ")
    assert word_fixation(varied).failed    # the word dominates sentences that differ


def test_a_name_in_an_attribute_access_is_not_word_fixation():
    # code junk under a prose prompt repeats `self` by grammar, not by fixation
    junk = ("        self._int = self._ ValueError(x)\n    def __repr__(self)\n        if self._is_special:\n"
            "            return self._exp\n        self._sign = self._raise_error(0)\n        self._exp = self._int\n"
            "        return self._check_nans(other, context)\n        self._fix = self._round\n"
            "        if self._is_nan and other._is_nan:\n            self._log(self._name, context.prec)\n"
            "        return self.copy_abs()\n        self._cache[key] = self._value\n")
    f = word_fixation(junk)
    assert not f.failed and f.metrics["top_word"] != "self"
    prose = ("The self is a story. The self remembers, the self forgets, and the self of the self is the self "
             "again. A self is a self, and the self knows it.")
    assert word_fixation(prose).failed and word_fixation(prose).evidence["word"] == "self"


def test_topic_word_in_normal_prose_is_not_word_fixation():
    text = ("Net revenue grew 8% to $12.4 billion. Revenue from data centers rose, while gaming revenue fell. "
            "Gross margin improved on a better product mix, and operating expenses grew with headcount. We "
            "expect revenue growth to continue as new products ship and customers expand their deployments.")
    assert not word_fixation(text).failed


def test_number_fixation_on_a_run_copied_from_the_prompt():
    prompt = "Our current ratio was 1.8 in 2024, 1.5 in 2023 and 1.6 in 2022."
    f = number_fixation(prompt, " The ratios were 1.8, 1.5, 1.6, 1.8, 1.6, 1.5, 1.8 and 1.6.")
    assert f.failed and f.evidence["numbers"] == 8 and f.evidence["predictable"] == 1.0


def test_counting_is_number_fixation_but_three_fiscal_years_are_not():
    years = ", ".join(str(y) for y in range(1863, 1875))
    f = number_fixation("The first bicycle,", f" the velocipede, appeared in {years}")
    assert f.failed and f.evidence["numbers"] == 12 and f.evidence["predictable"] == 0.75   # 4th term on
    steps = ", ".join(f"{bp} by ${bp / 40:.1f} million" for bp in range(200, 900, 100))
    f = number_fixation("A 100 basis point increase would", f" increase expense by {steps}")
    assert f.failed, "every other figure counts up: basis points and their cost"
    fresh = " Revenue was $4.1 billion, $3.8 billion and $3.2 billion in fiscal 2024, 2023 and 2022."
    assert not number_fixation("Results of operations", fresh).failed


def test_table_of_fresh_figures_is_not_number_fixation():
    table = "Cash 2,412 1,876 1,530 1,244 1,101 998 870 Receivables 3,320 3,015 2,870 2,700"
    f = number_fixation("The table shows our balances.", table)
    assert not f.failed and f.metrics["longest_number_run"] >= 7


def test_equal_figures_in_labelled_table_rows_are_data_but_a_bare_column_is_number_fixation():
    rows = "".join(f"{q} quarter    $0.22    $0.20\n" for q in ("First", "Second", "Third", "Fourth"))
    prompt = "Quarterly dividends per share were $0.22 in 2023 and $0.20 in 2022."
    f = number_fixation(prompt, "\n               2023     2022\n" + rows)
    assert not f.failed and f.metrics["longest_number_run"] <= 2
    column = "".join("$0.22\n" for _ in range(8))
    assert number_fixation(prompt, "\nThe dividends were\n" + column).failed


# ---------------------------------------------------------------- hallucinated_section / malformed_figure

def test_invented_item_and_wrong_title_are_hallucinated():
    f = hallucinated_section("Our business could be harmed.\n\nItem 1B. Sustainable Risks\n\nWe face risks.")
    assert f.failed and "Unresolved Staff Comments" in f.evidence["items"][0]["why"]
    f = hallucinated_section("ITEM 1A. LEGAL PROCEEDINGS\nNone.")
    assert f.failed and "Item 3" in f.evidence["items"][0]["why"]
    assert hallucinated_section("as described in Item 1D. Supplier Concentration.").failed
    assert hallucinated_section("Item 17. Governance").failed


def test_real_items_headings_and_references_pass():
    text = ("Item 1A. Risk Factors\nRisks.\nItem 1B. Unresolved Staff Comments\nNone.\nItem 6. [Reserved]\n"
            "PART II\nItem 7. Management’s Discussion and Analysis of Financial Condition\n"
            "See Item 1A of Part I, Items 7 and 7A, and Item 2.02 of the Form 8-K.\nItem 4. Not applicable.")
    f = hallucinated_section(text)
    assert not f.failed, f.evidence
    assert f.metrics["item_headings"] == 5


def test_section_check_applies_to_finance_text_only():
    assert applies("finance", "anything")
    assert applies("legal", "Form 10-K for the fiscal year")
    assert not applies("general", "Item 17 on the list of groceries")


def test_malformed_figures_each_rule():
    cases = {"$5.42%": "currency_percent", "$1,23,456": "bad_grouping", "4.2.1 billion": "several_decimal_points",
             "$$620 million": "doubled_sign", "12% million": "stacked_units",
             "62.5.% of our components": "stray_point", "$381 million,000": "glued_group"}
    for figure, rule in cases.items():
        f = malformed_figure(f"Growth was {figure} in the year.")
        assert f.failed and f.evidence["figures"][0]["rule"] == rule, figure


def test_malformed_cells_of_a_table_without_currency_signs():
    table = ("                 2023     2022\n5.125% Senior notes due 2031 4.0.0.0 400.0\n"
             "Term loan 2,37.5 250.0\nSee Note 4.2.1 for the terms.\n")
    f = malformed_figure(table)
    assert f.failed and [x["rule"] for x in f.evidence["figures"]] == ["several_decimal_points", "bad_grouping"]


def test_a_format_string_is_not_a_stray_point():
    # code junk under a 10-K prompt: `'7.%s` is Python's string formatting, not "7.%"
    assert not malformed_figure("        else:\n            if (, '7.%s are it").failed
    assert malformed_figure("margins of 7.% in the year").failed


def test_real_figures_are_not_malformed():
    text = ("Revenue was $1,234,567 thousand, or 12.5%, up from (1,234); rates of 3.25%–3.50%; $0.01 par value; "
            "see Note 4.2.1 and Section 10-K; pages 1,2,3; 1,000,000 shares; $ 574,785 and 2023,2024.")
    assert not malformed_figure(text).failed


# ---------------------------------------------------------------- input hygiene

def test_clean_text_handles_bad_input():
    text, notes = clean_text(b"caf\xe9 \xff ok")
    assert "\ufffd" in text and notes == ["invalid UTF-8 replaced by U+FFFD"]
    text, notes = clean_text("lone \ud800 surrogate")
    text.encode("utf-8")
    assert notes == ["unpaired surrogates replaced by U+FFFD"]
    text, notes = clean_text("x" * (MAX_CHARS + 10))
    assert len(text) == MAX_CHARS and "analysed" in notes[0]


def test_normalise_fills_defaults_and_folds_language_names():
    s, notes = normalise(Sample(id=7, domain="", prompt=None, completion="a\x00b", language="Py",
                                requires="recursion"))
    assert (s.id, s.domain, s.prompt, s.completion, s.language, s.requires) == \
        ("7", "general", "", "ab", "python", ("recursion",))
    assert notes == {"completion": ["NUL characters removed"]}


def test_tests_may_be_a_list_of_statements():
    row = {"id": "1", "domain": "code", "prompt": "p", "completion": "c", "tests": ["assert f(1) == 2", "assert f(0) == 1"]}
    assert sample_from_dict(row).tests == "assert f(1) == 2\nassert f(0) == 1\n"
    with pytest.raises(ValueError, match="'tests'"):
        sample_from_dict({**row, "tests": [1, 2]})
