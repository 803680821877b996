"""Modelling code that `gptlab export --format hf` ships into an exported folder, for transformers to run
with `AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)`.

    gptlab export runs/demo --format hf --out demo_hf      # copies the family's two files below into demo_hf/
    python -m pytest tests/test_export_hf.py

One configuration_*.py + modeling_*.py pair per family gptlab writes with its own architecture: gptlab's GPT
(`gptlab`) and nanochat's (`gptlab_nanochat`). Each file is self-contained (torch and transformers only, the
modelling file importing its configuration file relatively, as transformers requires) and is never imported
by gptlab itself: gptlab reads an exported folder with its own model classes (checkpoints/hf_native.py).
"""
