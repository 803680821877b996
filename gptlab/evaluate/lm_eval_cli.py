"""lm-evaluation-harness's own command line, with gptlab's checkpoints registered as the model "gptlab".

    python -m gptlab.evaluate.lm_eval_cli --model gptlab --model_args path=runs/d12 --tasks arc_easy
    python -m gptlab.evaluate.lm_eval_cli --model gptlab --model_args path=ckpt.pt,step=5000 --tasks hellaswag
    python -m pytest tests/test_benchmarks.py

lm-eval finds a model class only once its module is imported, and its `lm_eval` script imports none of
gptlab's; this entry point imports gptlab/evaluate/lm_eval_model.py (whose @register_model("gptlab") runs) and
hands every argument to lm-eval's CLI unchanged. Its output, flags and results files are lm-eval's; nothing
goes into gptlab's store (that is `gptlab bench`). Model args: path (a checkpoint, or a run: its newest step),
step, device, batch_size, add_bos_token, max_gen_toks (docs/benchmarks.md).
"""

from __future__ import annotations

import lm_eval.__main__

import gptlab.evaluate.lm_eval_model  # noqa: F401 - registers the model "gptlab" with lm-eval


def main() -> None:
    lm_eval.__main__.cli_evaluate()


if __name__ == "__main__":
    main()
