"""`gptlab export PATH --format hf --out DIR`: a checkpoint of any format as a Hugging Face folder.

    gptlab export peers/nanogpt/out-pystdlib-char --format hf --out char_hf     # stock GPT2LMHeadModel
    gptlab export runs/demo --format hf --out demo_hf                          # the run's newest checkpoint
    python -m pytest tests/test_export_hf.py

PATH is what `discover` reads (its newest checkpoint when it holds several; name a step folder for another).
What DIR holds, by the checkpoint's family:
  * GPT-2 (nanoGPT, llm.c): a stock `GPT2LMHeadModel` folder, config.json and model.safetensors in
    transformers' names and Conv1D layout; the head tied to the embedding; nanoGPT's `bias = False` written as
    zero biases and its exact GELU as activation "gelu" (llm.c and GPT-2 use the tanh form, "gelu_new");
  * gptlab's own GPT and nanochat's: config.json with `auto_map`, model.safetensors in gptlab's names, and the
    family's configuration_*.py + modeling_*.py (gptlab/export/remote/), so that
    `AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)` builds it. gptlab itself reads such a
    folder with its own model classes and runs no shipped code (checkpoints/hf_native.py);
  * a Hugging Face folder: saved again by transformers (save_pretrained).
Plus the tokenizer files (hf_tokenizer.py), so that AutoTokenizer gives gptlab's ids; a tokenizer that cannot
be written exactly is left out with one warning line. gptlab_export.json records the source (path, format,
step, tokens seen, weights hash). Weights are float32, as gptlab computes.
DIR is written whole or not at all: into a temporary folder beside it, each file fsynced, then renamed. A DIR
that exists and is not empty is refused unless `force`; with `force` it is replaced only once the new folder
is complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from gptlab import __version__
from gptlab.checkpoints import LoadedModel, discover, load
from gptlab.checkpoints.gptlab_run import fsync_path
from gptlab.data import write_error
from gptlab.errors import GptlabError
from gptlab.export import hf_tokenizer

FORMATS = ("hf",)
RECORD = "gptlab_export.json"
REMOTE = Path(__file__).parent / "remote"
# family -> (model_type, config class, model class, config fields): the modelling code gptlab ships
REMOTE_FAMILIES = {
    "gptlab": ("gptlab", "GptlabConfig", "GptlabForCausalLM",
               ("n_layer", "n_embd", "n_head", "n_kv_head", "vocab_size", "sequence_len", "softcap", "rope_base")),
    "nanochat": ("gptlab_nanochat", "GptlabNanochatConfig", "GptlabNanochatForCausalLM",
                 ("sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd", "window_pattern")),
}
# transformers' GPT-2 keeps these as Conv1D, (in, out); gptlab's GPT2 as nn.Linear, (out, in)
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _transformers():
    try:
        import transformers  # deferred: optional extra [hf]; only export needs it
    except ImportError:
        raise GptlabError("gptlab export --format hf needs transformers: pip install 'gptlab[hf]'") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def check_out(out: Path, force: bool) -> None:
    """DIR may be new or an empty folder; a non-empty one only with --force; a file never."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise GptlabError(f"{out}: exists and is not a folder; give --out a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise GptlabError(f"{out}: exists and is not empty; give --force to replace it, or another --out")


def export_hf(path: str, out: str | Path, *, fmt: str = "hf", force: bool = False, say=print) -> Path:
    """Write the newest checkpoint under `path` into the folder `out` (see the module docstring)."""
    if fmt not in FORMATS:
        raise GptlabError(f"--format {fmt!r}: the formats are {', '.join(FORMATS)}")
    out = Path(out)
    check_out(out, force)
    transformers = _transformers()
    refs = discover(path)
    ref = refs[-1]
    if len(refs) > 1:
        say(f"{path} holds {len(refs)} checkpoints; exporting the newest, {ref.label} ({ref.path})")
    loaded = load(ref, "cpu")
    family = loaded.info.family
    if family not in ("gpt2", *REMOTE_FAMILIES) and not family.startswith("hf:"):
        raise GptlabError(f"{ref.path}: a {family} checkpoint cannot be exported to Hugging Face (families: gpt2, "
                          f"gptlab, nanochat, hf)")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    current: Path = tmp
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tokenizer_note = _write_tokenizer(loaded, tmp, say)
        # the document separator starts and ends documents; none (char-level) is None, not GPT-2's 50256
        special = {"bos_token_id": loaded.tokenizer.bos_id, "eos_token_id": loaded.tokenizer.bos_id}
        if family == "gpt2":
            _write_gpt2(loaded, tmp, transformers, special)
        elif family in REMOTE_FAMILIES:
            _write_remote(loaded, tmp, family, transformers.__version__, special)
        else:
            loaded.model.hf.save_pretrained(str(tmp))
        info = loaded.info
        record = {"gptlab_version": __version__, "tokenizer": tokenizer_note,
                  "source": {"path": str(Path(info.path).resolve()), "format": info.format, "family": family,
                             "run": info.run, "step": info.step, "tokens_seen": info.tokens_seen,
                             "weights_hash": info.weights_hash}}
        (tmp / RECORD).write_text(json.dumps(record, indent=1) + "\n")
        for f in tmp.iterdir():
            current = f
            fsync_path(f)
        current = out
        _replace(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(current, e) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_tokenizer(loaded: LoadedModel, folder: Path, say) -> str:
    """The tokenizer files, or a warning and none when the tokenizer cannot be written exactly."""
    try:
        hf_tokenizer.write(loaded.tokenizer, folder, loaded.info.context)
    except GptlabError as e:
        say(f"gptlab: warning: no tokenizer files written: {e}")
        return f"not written: {e}"
    return "tokenizer.json"


def _write_gpt2(loaded: LoadedModel, folder: Path, transformers, special: dict) -> None:
    """A stock GPT2LMHeadModel: config.json by transformers' GPT2Config, weights in its names and layout."""
    model = loaded.model
    c = model.config
    config = transformers.GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.sequence_len, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
        layer_norm_epsilon=c.layer_norm_eps, activation_function="gelu" if c.gelu == "none" else "gelu_new",
        tie_word_embeddings=True, architectures=["GPT2LMHeadModel"], **special)
    state = {}
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu", torch.float32)
        state[name] = (t.t() if name.endswith(CONV1D) else t).contiguous().clone()
    if not c.bias:              # no biases (nanoGPT bias=False): zeros compute the same
        C = c.n_embd
        zeros = {"ln_1.bias": C, "attn.c_attn.bias": 3 * C, "attn.c_proj.bias": C, "ln_2.bias": C,
                 "mlp.c_fc.bias": 4 * C, "mlp.c_proj.bias": C}
        for i in range(c.n_layer):
            for k, n in zeros.items():
                state.setdefault(f"transformer.h.{i}.{k}", torch.zeros(n))
        state.setdefault("transformer.ln_f.bias", torch.zeros(C))
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(folder))


def _write_remote(loaded: LoadedModel, folder: Path, family: str, transformers_version: str, special: dict) -> None:
    """config.json with auto_map, gptlab's weights, and the family's modelling code."""
    model_type, config_class, model_class, fields = REMOTE_FAMILIES[family]
    c = loaded.model.config
    config = {"architectures": [model_class], "model_type": model_type,
              "auto_map": {"AutoConfig": f"configuration_{model_type}.{config_class}",
                           "AutoModelForCausalLM": f"modeling_{model_type}.{model_class}"},
              **{k: getattr(c, k) for k in fields}, **special, "tie_word_embeddings": False, "use_cache": False,
              "dtype": "float32", "transformers_version": transformers_version}
    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in loaded.model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for kind in ("configuration", "modeling"):
        shutil.copyfile(REMOTE / f"{kind}_{model_type}.py", folder / f"{kind}_{model_type}.py")



def _replace(tmp: Path, out: Path) -> None:
    """Rename the finished folder into place; a folder already there is set aside first, removed after."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.is_dir():
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old.is_dir():
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
    fsync_path(out.parent)
