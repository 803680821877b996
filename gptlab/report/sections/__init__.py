"""The report's sections, one module each; a section is a function (store, context) -> Section, and
gptlab/report/__init__.py lists them in the order the report shows them.

    gptlab report runs/demo --db results.sqlite
    python -m pytest tests/test_report.py
"""
