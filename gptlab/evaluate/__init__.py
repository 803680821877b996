"""Evaluation: bits per byte (bpb.py), probes and sampling (probes.py, run.py), diagnosis (diagnose/),
the sandbox for model-written code (sandbox.py), statistics (stats.py, trend.py), comparison and claims.

    gptlab eval PATH        runs bpb, probes and diagnosis for every checkpoint under PATH
"""
