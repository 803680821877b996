"""Models side by side and written claims, read from the store: which checkpoints a PATH names (select.py),
their stored results as resamplable units (measurements.py), rankings with intervals (ranking.py), claims
files parsed (claims.py) and judged (claims_verdict.py), comparisons and verdicts as JSON (records.py), the store's
tables exported for other tools (results.py). Nothing here runs a model or renders a page.

    gptlab compare runs/code_heavy runs/prose_heavy --no-eval
    gptlab check examples/claims.toml
    gptlab results runs/code_heavy --format csv --out results
    python -m pytest tests/test_compare.py tests/test_claims.py tests/test_results.py
"""
