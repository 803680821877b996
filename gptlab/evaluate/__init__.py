"""Evaluation of checkpoints into the results store: bits per byte (bpb.py; which text: bpb_domains.py),
probe sampling (probe_sampling.py), diagnosis of the samples (findings.py), and the job running them (job.py);
lm-evaluation-harness tasks through the model "gptlab" (lm_eval_model.py, lm_eval_cli.py; job: benchmarks.py).

    gptlab eval PATH        runs bpb, probes and diagnosis for every checkpoint under PATH
    gptlab bench PATH --tasks arc_easy      lm-eval tasks (optional extra [bench])
    python -m pytest tests/test_eval.py tests/test_bpb.py
"""
