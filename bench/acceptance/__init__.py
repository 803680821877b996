"""The rows of bench/gpu_acceptance.py, one module per kind of work: train_rows (gptlab's and nanochat's d12
training step), inference_rows (bpb and sampling against transformers), eval_row (the full default
evaluation of 10 checkpoints); common holds the shapes and the measuring helpers."""
