"""Quick looks: stream a completion of one prompt from every checkpoint under a path, oldest first.

    gptlab sample runs/demo "def quicksort(arr):" --temperature 0.8 --max-tokens 200
    gptlab sample runs/demo/checkpoints/step_000240 "Water is" --last --seed 3
    python -m pytest tests/test_eval.py -k sample

Nothing is stored (`gptlab eval` is the command that records samples). With the same seed, the text equals
the stored sample of the same prompt only if the seed is derived the same way, which `gptlab eval` does per
probe and sample index; here `--seed` seeds the one row directly.
"""

from __future__ import annotations

import sys

from gptlab.checkpoints import discover, load
from gptlab.devices import pick_device
from gptlab.engine import Engine, _check_sampling
from gptlab.errors import GptlabError


def sample_paths(path: str, prompt: str, *, temperature: float = 0.8, max_tokens: int = 200,
                 top_k: int | None = None, top_p: float | None = None, seed: int = 0, device: str | None = None,
                 last: bool = False, out=None) -> list[str]:
    """Stream a completion per checkpoint to `out` (stdout); returns the completions."""
    out = out or sys.stdout
    _check_sampling(top_k, top_p, [temperature])
    if max_tokens < 1:
        raise GptlabError(f"--max-tokens {max_tokens}: must be at least 1")
    if not prompt:
        raise GptlabError("the prompt is empty")
    device = pick_device(device)
    refs = discover(path)
    if last:
        refs = refs[-1:]
    texts = []
    for ref in refs:
        loaded = load(ref, device)
        engine = Engine(loaded.model, loaded.tokenizer)
        if len(refs) > 1 or last:
            out.write(f"\n── {ref.label} ──\n")
        out.write(prompt)
        out.flush()
        pieces = []

        def show(text):
            pieces.append(text)
            out.write(text)
            out.flush()

        c = engine.stream(prompt, max_tokens, show, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        out.write("\n")
        if c.cropped:
            out.write(f"[prompt cropped: its first {c.cropped} tokens did not fit the context of {engine.context}]\n")
        if len(c.tokens) < max_tokens and not c.stopped:
            out.write(f"[{len(c.tokens)} tokens: all the context of {engine.context} leaves room for]\n")
        out.flush()
        texts.append("".join(pieces))
    return texts
