"""Checkpoints out to other tools: `gptlab export PATH --format hf --out DIR` writes a Hugging Face folder.

    gptlab export runs/demo --format hf --out demo_hf
    python -m pytest tests/test_export_hf.py

hf_folder.py writes the folder (weights, config, modelling code where transformers has none), hf_tokenizer.py
the tokenizer files, remote/ holds the modelling code shipped into folders of gptlab's and nanochat's family.
"""
