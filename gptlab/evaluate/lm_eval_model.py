"""Every checkpoint gptlab reads as an lm-evaluation-harness model, registered with lm-eval as "gptlab".

    gptlab bench runs/d12 --tasks hellaswag,arc_easy                 (gptlab/evaluate/benchmarks.py)
    python -m gptlab.evaluate.lm_eval_cli --model gptlab --model_args path=runs/d12 --tasks arc_easy
    python -m pytest tests/test_benchmarks_parity.py

`GptlabLM(path=...)` (or `GptlabLM(loaded=...)` for a model gptlab already loaded) implements lm-eval's three
requests on gptlab's models (gptlab/checkpoints: any format) and sampling engine (gptlab/engine.py):

  * loglikelihood(context, continuation) -> (log p(continuation | context), whether greedy decoding gives
    it). The pair is split as lm-eval's `hf` model splits it: trailing spaces of the context move to the
    continuation, context + continuation is encoded whole and the continuation is what follows the context's
    tokens; an empty context is the document separator (BOS / end-of-text). Inputs longer than the context
    window lose tokens from the left.
  * loglikelihood_rolling(text) -> log p(text): the text's tokens after the separator, in lm-eval's own
    disjoint windows (lm_eval.utils.get_rolling_token_windows), each window's sum added.
  * generate_until(context, gen_kwargs) -> text: the engine's batched KV-cache decoding, greedy unless
    do_sample (then temperature, top_k, top_p, a seed per request); the text is cut at the first stop string.
    Rows generate ROUND_TOKENS at a time and those whose text holds a stop string (or that reached
    end-of-text or max_gen_toks) leave; the rest continue from prompt + what they generated (a new prefill,
    and for sampled rows a new seed per round).

Scoring is batched: requests sorted longest first, right-padded (attention is causal, so padding never changes
a real position), at most `batch_size` rows and a bounded number of logits per forward pass. Log-probabilities
are float32 log-softmax over the model's rows (as bits per byte normalises), summed in float64; "greedy"
compares the argmax over the tokenizer's ids (padded rows of the head are not tokens, as in the engine).

BOS. Models gptlab trains, nanochat's, nanoGPT's and llm.c's read every document after the separator, so
contexts start with it (`add_bos_token`, default true). A Hugging Face folder follows its tokenizer, as
lm-eval's `hf` model does: BOS only when tokenizer_config.json asks for it or the tokenizer's post-processor
adds it (a GPT-2 does not). A tokenizer without a separator (char-level nanoGPT) uses the first token of an
empty context or a rolling text as context only. PROTOCOL and the BOS choice are stored with every result.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import normalize_gen_kwargs
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from gptlab.checkpoints import discover, load
from gptlab.devices import pick_device
from gptlab.engine import Engine, plan_batches, row_seed
from gptlab.errors import GptlabError
from gptlab.models import SplitHeadLM

PROTOCOL = "lmeval-1"           # bump when anything in the module docstring's protocol changes
DEFAULT_BATCH = 16              # rows per forward pass
TOKENS_PER_BATCH = 1 << 15      # input positions per forward pass (rows x width)
LOGIT_CELLS = 1 << 27           # (positions x vocab) float32 logits a model without `head` may return at once
HEAD_ROWS = 1024                # positions per head call for models with `hidden`/`head`
MAX_GEN_TOKS = 256              # lm-eval's default when a task gives no max_gen_toks
ROUND_TOKENS = 32               # tokens generated per row before its stop strings are looked for


def _flag(value, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise GptlabError(f"{name}={value!r}: expected true or false")


def _positive(value, name: str, default: int) -> int:
    if value is None or str(value).startswith("auto"):
        return default
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise GptlabError(f"{name}={value!r}: expected a positive integer") from None
    if n < 1:
        raise GptlabError(f"{name}={value!r}: expected a positive integer")
    return n


def _device(device):
    """gptlab's --device rule, except that lm-eval's default "cuda:0" falls back to the CPU where there is no
    CUDA (as lm-eval's own hf model does)."""
    if device and str(device).startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning("gptlab model: CUDA is not available here; using the CPU")
        device = "cpu"
    return pick_device(device)


def pick_checkpoint(path, step=None):
    """The one checkpoint `path` names: `step` of a run, else its newest; a folder of several runs is an error."""
    refs = discover(path)
    if step is not None:
        want = _positive(step, "step", 0) if str(step) != "0" else 0
        hits = [r for r in refs if r.step == want]
        if not hits:
            raise GptlabError(f"{path}: no checkpoint at step {want} (steps: "
                              f"{', '.join(str(r.step) for r in refs)})")
        refs = hits
    if len({r.run for r in refs}) > 1:
        raise GptlabError(f"{path}: holds {len(refs)} checkpoints of several runs; name one checkpoint")
    return refs[-1]


def bos_default(loaded) -> bool:
    """Whether contexts start with BOS when `add_bos_token` is not given (see the module docstring)."""
    if loaded.info.format != "hf":
        return True
    folder = Path(loaded.info.path)
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    if isinstance(config, dict) and isinstance(config.get("add_bos_token"), bool):
        return config["add_bos_token"]
    tok = getattr(loaded.tokenizer, "tok", None)              # an HFTokenizer: ask its post-processor
    bos = loaded.tokenizer.bos_id
    if tok is None or bos is None:
        return False
    plain, special = tok.encode("a", add_special_tokens=False).ids, tok.encode("a", add_special_tokens=True).ids
    return len(special) > len(plain) and special[0] == bos


@register_model("gptlab")
class GptlabLM(LM):
    """A gptlab checkpoint behind lm-eval's model interface (see the module docstring)."""

    def __init__(self, path: str | None = None, *, loaded=None, step=None, device=None, batch_size=None,
                 max_batch_size=None, add_bos_token=None, max_gen_toks=None):
        super().__init__()
        del max_batch_size                          # lm-eval passes it for its "auto" batch sizes; not used here
        if loaded is None:
            if not path:
                raise GptlabError("the gptlab model needs path=CHECKPOINT (model_args path=runs/d12)")
            loaded = load(pick_checkpoint(path, step), _device(device))
        self.loaded, self.model, self.tokenizer, self.info = loaded, loaded.model, loaded.tokenizer, loaded.info
        self.model.eval()
        self._device = next(self.model.parameters()).device
        self.batch_size = _positive(batch_size, "batch_size", DEFAULT_BATCH)
        self.max_gen_toks = _positive(max_gen_toks, "max_gen_toks", MAX_GEN_TOKS)
        self.max_length = int(self.model.sequence_len)
        self.vocab = min(int(self.model.vocab_size), int(self.tokenizer.vocab_size))
        given = _flag(add_bos_token, "add_bos_token")
        self.add_bos = (bos_default(loaded) if given is None else given) and self.tokenizer.bos_id is not None
        self.split_head = isinstance(self.model, SplitHeadLM)
        self.engine = Engine(self.model, self.tokenizer, max_rows=self.batch_size)
        self.calls = 0                                          # forward passes run (gptlab bench counts them)

    @property
    def protocol(self) -> str:
        """What the store keys results by besides the task: this module's protocol and the BOS choice."""
        return f"{PROTOCOL}+{'bos' if self.add_bos else 'nobos'}"

    @property
    def prefix_token_id(self) -> int | None:
        return self.tokenizer.bos_id

    def get_model_info(self) -> dict:
        """What lm-eval writes into its results' config."""
        return {"model_num_parameters": self.info.params, "model_dtype": str(next(self.model.parameters()).dtype),
                "model_revision": f"{self.info.run}@{self.info.step}", "model_sha": self.info.weights_hash,
                "gptlab_format": self.info.format, "gptlab_protocol": self.protocol}

    # ------------------------------------------------------------------ encoding

    def encode(self, text: str, bos: bool | None = None) -> list[int]:
        """Token ids of `text`, after BOS when `bos` (default: add_bos_token) and the tokenizer has one."""
        use = self.add_bos if bos is None else bos
        head = [self.tokenizer.bos_id] if use and self.tokenizer.bos_id is not None else []
        return head + (self.tokenizer.encode(text) if text else [])

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids) as lm-eval's `hf` model splits them (see the module docstring)."""
        if context == "":
            ids = self.encode(continuation, bos=False)
            prefix = self.prefix_token_id
            if prefix is None or (ids and ids[0] == prefix):
                return ids[:1], ids[1:]
            return [prefix], ids
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole, head = self.encode(context + continuation), self.encode(context)
        if not head:                                # a context of spaces only: the separator stands in
            head = [self.prefix_token_id] if self.prefix_token_id is not None else []
            whole = head + whole
        return head, whole[len(head):]

    # ------------------------------------------------------------------ the three requests

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self.score_pairs([self.encode_pair(*r.args) for r in requests])

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owner = [], []
        for i, r in enumerate(requests):
            ids = self.encode(r.args[0], bos=False)
            prefix = self.prefix_token_id
            if prefix is None and ids:               # no separator: the first token is context only
                prefix, ids = ids[0], ids[1:]
            for pair in get_rolling_token_windows(ids, prefix, self.max_length, 1):
                windows.append(make_disjoint_window(pair))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (logp, _) in zip(owner, self.score_pairs(windows)):
            totals[i] += logp
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        groups = defaultdict(list)
        for i, r in enumerate(requests):
            groups[json.dumps(r.args[1], sort_keys=True, default=str)].append(i)
        for indices in groups.values():
            kw = normalize_gen_kwargs(requests[indices[0]].args[1], self.max_gen_toks)
            texts = self._generate([requests[i].args[0] for i in indices], kw, indices)
            for i, text in zip(indices, texts):
                out[i] = text
        return out

    # ------------------------------------------------------------------ scoring

    def score_pairs(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(sum of log p of the continuation ids, whether each is the argmax) per (context ids, continuation ids)."""
        items, results = [], [None] * len(pairs)
        for i, (ctx, cont) in enumerate(pairs):
            if not ctx:                             # nothing to condition on: the first token is context only
                ctx, cont = cont[:1], cont[1:]
            if not cont:                            # nothing left to score: probability 1
                results[i] = (0.0, True)
                continue
            if len(cont) > self.max_length:
                raise GptlabError(f"a continuation of {len(cont)} tokens is longer than the model's context "
                                  f"({self.max_length})")
            ids = (ctx + cont)[-(self.max_length + 1):]
            items.append((i, ids[:-1], cont))
        order = sorted(range(len(items)), key=lambda k: (-len(items[k][1]), k))
        for batch in self._batches(order, items):
            for k, got in zip(batch, self._score_batch([items[k][1:] for k in batch])):
                results[items[k][0]] = got
        return results

    def _batches(self, order: list[int], items):
        """Rows of `order` in batches bounded by batch_size, TOKENS_PER_BATCH and (models without a separate
        head) LOGIT_CELLS; the first row of a batch is its longest."""
        batch, width = [], 0
        for i in order:
            n = len(items[i][1])
            width = width or max(n, 1)
            cells = (len(batch) + 1) * (width if self.split_head else width * self.model.vocab_size)
            limit = TOKENS_PER_BATCH if self.split_head else max(LOGIT_CELLS, width * self.model.vocab_size)
            if batch and (len(batch) >= self.batch_size or cells > limit):
                yield batch
                batch, width = [], max(n, 1)
            batch.append(i)
        if batch:
            yield batch

    @torch.inference_mode()
    def _score_batch(self, batch) -> list[tuple[float, bool]]:
        width = max(len(inp) for inp, _ in batch)
        x = torch.zeros((len(batch), width), dtype=torch.long)
        y = torch.full((len(batch), width), -1, dtype=torch.long)
        for r, (inp, cont) in enumerate(batch):
            x[r, :len(inp)] = torch.tensor(inp, dtype=torch.long)
            y[r, len(inp) - len(cont):len(inp)] = torch.tensor(cont, dtype=torch.long)
        first = min(len(inp) - len(cont) for inp, cont in batch)
        y = y[:, first:]
        logp, greedy = self._target_scores(x.to(self._device), y.to(self._device), first)
        logp, greedy = logp.double().cpu(), greedy.cpu()
        out = []
        for r in range(len(batch)):
            keep = y[r] >= 0
            out.append((float(logp[r][keep].sum()), bool(greedy[r][keep].all())))
        return out

    def _target_scores(self, x: torch.Tensor, y: torch.Tensor, first: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(y), argmax == y), both (B, T - first), at the positions where y >= 0 (elsewhere 0 / True)."""
        self.calls += 1
        flat = y.reshape(-1)
        keep = (flat >= 0).nonzero().squeeze(1)
        logp = torch.zeros(flat.shape, dtype=torch.float32, device=x.device)
        greedy = torch.ones(flat.shape, dtype=torch.bool, device=x.device)
        if self.split_head:
            h = self.model.hidden(x, logits_from=first)
            h = h.reshape(-1, h.shape[-1])[keep]
        else:
            logits = self.model(x, logits_from=first)
            h = logits.reshape(-1, logits.shape[-1])[keep]
        for a in range(0, len(keep), HEAD_ROWS):
            rows = h[a:a + HEAD_ROWS]
            logits = (self.model.head(rows) if self.split_head else rows).float()
            target = flat[keep[a:a + HEAD_ROWS]]
            logp[keep[a:a + HEAD_ROWS]] = logits.gather(1, target[:, None]).squeeze(1) - logits.logsumexp(dim=-1)
            greedy[keep[a:a + HEAD_ROWS]] = logits[:, :self.vocab].argmax(dim=-1) == target
        return logp.view(y.shape), greedy.view(y.shape)

    # ------------------------------------------------------------------ generation

    def _generate(self, contexts: list[str], kw: dict, indices: list[int]) -> list[str]:
        until = [s for s in kw.pop("until", []) if s]
        wanted = int(kw.pop("max_gen_toks"))
        temperature = float(kw.pop("temperature", 0.0) or 0.0) if kw.pop("do_sample", False) else 0.0
        top_k, top_p = kw.pop("top_k", None), kw.pop("top_p", None)
        prompts, news = [], []
        for text in contexts:
            ids = self.encode(text)
            if not ids:
                raise GptlabError("generate_until with an empty context needs a tokenizer with a BOS token")
            if wanted < 1:
                raise GptlabError(f"max_gen_toks {wanted}: expected at least 1")
            keep = max(self.max_length - wanted, min(len(ids), self.max_length // 4), 1)
            ids = ids[-keep:]                       # as lm-eval's hf model: the context's left end goes
            prompts.append(ids)
            news.append(max(1, min(wanted, self.max_length - len(ids))))
        top_k = int(top_k) if top_k else None
        top_p = float(top_p) if top_p not in (None, 1, 1.0) else None
        gen: list[list[int]] = [[] for _ in contexts]
        texts: list[str | None] = [None] * len(contexts)
        pending, round_ = list(range(len(contexts))), 0
        while pending:                              # rounds of ROUND_TOKENS: a row stops at its first stop string
            plan = plan_batches([len(prompts[r]) + len(gen[r]) for r in pending], ROUND_TOKENS, self.batch_size)
            for rows in plan:
                rows = [pending[k] for k in rows]
                self.calls += 1
                got = self.engine.run_batch(
                    [prompts[r] + gen[r] for r in rows], [temperature] * len(rows),
                    [row_seed("lm-eval", contexts[r], indices[r], *([round_] if round_ else [])) for r in rows],
                    [min(ROUND_TOKENS, news[r] - len(gen[r])) for r in rows], top_k=top_k, top_p=top_p)
                for r, c in zip(rows, got):
                    gen[r] += c.tokens
                    text = self.tokenizer.decode(gen[r])
                    if c.stopped or len(gen[r]) >= news[r] or any(s in text for s in until):
                        texts[r] = _cut(text, until)
            pending, round_ = [r for r in pending if texts[r] is None], round_ + 1
        return texts


def _cut(text: str, until: list[str]) -> str:
    """`text` before the first occurrence of any stop string."""
    end = min((i for i in (text.find(s) for s in until) if i >= 0), default=len(text))
    return text[:end]

