"""Statistics read by compare, check and the report: bootstrap intervals and rankings (bootstrap.py), the
convergence fit of a training curve (trend.py), a model ladder's loss-by-size law (scaling.py) and
capability-by-loss fits with their crossings (capability.py). Pure numpy; nothing here touches the store or a
model.

    python -m pytest tests/test_stats.py tests/test_trend.py tests/test_scaling.py
"""
