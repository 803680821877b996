"""hallucinated_section: a Form 10-K "Item" that does not exist, or a heading with another item's title.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_detectors.py -k "hallucinated or items or section"

The real items (SEC Form 10-K, Parts I-IV) and their titles are in ITEMS, with the variants filings use
(Item 6 "[Reserved]" or, before 2021, "Selected Financial Data"; Item 4 before 2010, ...).

* A heading is "Item <id>" at the start of a line (after an optional "PART II" and markdown marks),
  followed by a separator (. : — – -) or by a capitalised word, then the title. It fails when <id> is
  not an item, or when the first (up to 3) content words of its title are not all words of that item's
  title ("Item 1B. Sustainable Risks": Item 1B is "Unresolved Staff Comments"). A heading without a
  title, or "Not applicable", passes.
* A reference ("see Item 1D", "Items 7 and 7A") anywhere fails only when the item does not exist.

Judged only on finance-like text (`applies`): domain "finance", or "10-K" / "Form 10" / an Item heading in the
prompt. Its false alarms on real filings are measured by bench/diagnose_calibrate.py.
"""

from __future__ import annotations

import re

from gptlab.diagnose.registry import detector
from gptlab.diagnose.text import clip, stem
from gptlab.diagnose.types import Finding

ITEMS = {
    "1": ("Business",),
    "1A": ("Risk Factors",),
    "1B": ("Unresolved Staff Comments",),
    "1C": ("Cybersecurity",),
    "2": ("Properties", "Description of Property"),
    "3": ("Legal Proceedings",),
    "4": ("Mine Safety Disclosures", "Submission of Matters to a Vote of Security Holders", "Reserved",
          "Removed and Reserved"),
    "5": ("Market for Registrant's Common Equity, Related Stockholder Matters and Issuer Purchases of "
          "Equity Securities",),
    "6": ("Reserved", "Selected Financial Data"),
    "7": ("Management's Discussion and Analysis of Financial Condition and Results of Operations",),
    "7A": ("Quantitative and Qualitative Disclosures About Market Risk",),
    "8": ("Financial Statements and Supplementary Data",),
    "9": ("Changes in and Disagreements with Accountants on Accounting and Financial Disclosure",),
    "9A": ("Controls and Procedures",),
    "9B": ("Other Information",),
    "9C": ("Disclosure Regarding Foreign Jurisdictions that Prevent Inspections",),
    "10": ("Directors, Executive Officers and Corporate Governance",),
    "11": ("Executive Compensation",),
    "12": ("Security Ownership of Certain Beneficial Owners and Management and Related Stockholder Matters",),
    "13": ("Certain Relationships and Related Transactions, and Director Independence",),
    "14": ("Principal Accountant Fees and Services", "Principal Accounting Fees and Services"),
    "15": ("Exhibits and Financial Statement Schedules", "Exhibit and Financial Statement Schedules"),
    "16": ("Form 10-K Summary",),
}
ANY_ITEM_TITLES = ("Not applicable", "None", "Omitted")

_TITLE_STOP = {"and", "of", "in", "on", "for", "the", "about", "with", "that", "to", "a", "an", "our",
               "not"}
_HEADING_RE = re.compile(
    r"^[ \t>*#_|-]*(?:PART\s+[IV]+\s*[,.:—–-]?\s*)?ITEM\s+(\d{1,2}[A-Z]?)(?![.,]\d)(?:\s*\(T\))?"
    r"(?:\s*[.:—–-]+\s*|\s+(?-i:(?=[A-Z])))([^\n]*)$", re.IGNORECASE | re.MULTILINE)
_REFERENCE_RE = re.compile(r"\bItems?\s+(\d{1,2}[A-Z]?)(?:\s*\(T\))?(?![\w,.]\d)", re.IGNORECASE)
_FINANCE_HINT = re.compile(r"\b10-K\b|\bForm\s+10\b|^\s*ITEM\s+\d{1,2}[A-Z]?\s*[.:—–-]", re.IGNORECASE | re.MULTILINE)


def _words(title: str) -> list[str]:
    title = title.lower().replace("’", "'").replace("&", " and ")
    return [stem(w) for w in re.findall(r"[a-z0-9']+", title) if w not in _TITLE_STOP]


_ITEM_WORDS = {item: [set(_words(t)) for t in titles] for item, titles in ITEMS.items()}
_ANY_WORDS = [set(_words(t)) for t in ANY_ITEM_TITLES]


def applies(domain: str, prompt: str) -> bool:
    return domain == "finance" or bool(_FINANCE_HINT.search(prompt))


def _title_matches(item: str, title: str) -> bool:
    head = _words(re.sub(r"[\[\]()]", " ", title))[:3]
    if not head:
        return True
    return any(set(head) <= words for words in _ITEM_WORDS[item] + _ANY_WORDS)


def _owner(title: str) -> str | None:
    head = set(_words(title)[:3])
    return next((item for item, variants in _ITEM_WORDS.items() if head and any(head <= w for w in variants)),
                None)


def first_heading(text: str) -> re.Match | None:
    """The first Item heading in `text`: where a completion moves on to another section of the filing."""
    return _HEADING_RE.search(text)


@detector("hallucinated_section", scope="prose")
def hallucinated_section(completion: str) -> Finding:
    problems = []
    heading_spans = []
    headings = 0
    for m in _HEADING_RE.finditer(completion):
        headings += 1
        heading_spans.append((m.start(), m.end()))
        item, title = m.group(1).upper(), m.group(2).strip()
        if item not in ITEMS:
            problems.append({"heading": clip(m.group().strip(), 120), "why": f"there is no Item {item}"})
        elif not _title_matches(item, title):
            owner = _owner(title)
            why = (f"that is the title of Item {owner}" if owner and owner != item
                   else f"Item {item} is {ITEMS[item][0]!r}")
            problems.append({"heading": clip(m.group().strip(), 120), "why": why})
    references = 0
    for m in _REFERENCE_RE.finditer(completion):
        if any(s <= m.start() < e for s, e in heading_spans):
            continue
        references += 1
        item = m.group(1).upper()
        if item not in ITEMS:
            problems.append({"reference": clip(completion[max(0, m.start() - 40):m.end() + 40], 120),
                             "why": f"there is no Item {item}"})
    metrics = {"item_headings": headings, "item_references": references}
    if not problems:
        return Finding(False, metrics)
    return Finding(True, metrics, {"items": problems[:5], "count": len(problems)})
