"""Batched sampling with a KV cache, for every model family behind the narrow interface.

    gptlab sample runs/demo "def quicksort(arr):"          streams one completion per checkpoint
    gptlab eval runs/demo                                   samples every probe, 8 times, in batches
    python bench/generate_vs_transformers.py                our tokens/s against transformers' generate
    python -m pytest tests/test_engine.py

A request is (prompt, temperature, seed); a completion is the generated token ids. Everything a model needs
is the `CausalLM` interface (gptlab/models/__init__.py): `forward(idx, cache)`, `new_cache(B, max_len)`,
`cache.select(rows)` and `sequence_len`, so gptlab's GPT, GPT-2 (nanoGPT, llm.c) and Hugging Face models all
sample here.

Prompt. BOS + encode(prompt) when the tokenizer has a BOS (models are trained with BOS before every
document). When prompt + max_new exceeds the model's context, the prompt is cropped from the left, keeping
the BOS, and `Completion.cropped` says how many tokens were dropped; a prompt is never cropped below a
quarter of the context — a model with a context too short for that generates fewer tokens instead
(`Engine.fit`). A completion ends after max_new tokens or when the model emits BOS/end-of-text (it started
a new document); that token is not part of the text.

Randomness. Each row draws its token k from one uniform number u(seed, k), a counter-based hash
(splitmix64) of the row's seed and k: inverse-CDF sampling, token = first index whose cumulative
probability reaches u. So a row's text depends only on its prompt, temperature, top-k/top-p and seed —
not on which other rows share its batch, the batch size, or the order of the job — and a restarted job
reproduces it exactly on the same device, dtype and thread count (float rounding differs between batch
shapes or thread counts only in the last bits, which flips a token only when u falls within ~1e-7 of a
boundary). Lengths: the text of the first n tokens is the shorter sample, so 80 and 200 tokens cost one
200-token generation.

Batching. Rows of many prompts run together: the shared prefix (the first Lmin - 1 tokens, Lmin the shortest
prompt of the batch) is prefilled once per distinct prompt, and its keys/values stay stored once, read once
per step for all the samples of that prompt (`KVCache.share`; families whose cache cannot share, nanochat's
and transformers', copy them to every sample instead); then all rows advance in lockstep one position per
step, each fed its own prompt token while it still has one and its sampled token after that (as Meta's
reference LLaMA generator does). Nothing is padded and no attention mask is needed, so the narrow interface
suffices and every row sees exactly the positions it would see alone. The cost is Lmax - Lmin extra steps,
so `plan_batches` groups rows by prompt length; finished rows are dropped from the batch (`cache.select`).
Speed: inference_mode, a preallocated cache, logits of the last position only (`logits_from` where the
model accepts it), the noise drawn once per batch, and no per-row Python in the decode loop.

On CUDA (`decode="auto"`), families whose `new_cache` takes `static=True` (gptlab's GPT, GPT-2) decode from a
CUDA graph (models/decode_graph.py): a StaticKVCache, prompts copied per sample instead of shared, and no rows
dropped mid-batch (the graph has a fixed batch), since a replayed step costs a fraction of an eager one on a
small model. `decode="static"` runs the same fixed-shape path eagerly (the CPU tests' way to check it gives
the dynamic cache's tokens); "compiled" adds torch.compile. `max_rows=None` is 64 rows on a CPU and, on CUDA,
what the free memory holds (up to GPU_ROWS_CAP); a batch that runs out of memory runs again in halves
(gptlab/batching.py), and the engine keeps the smaller size.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from gptlab.batching import Halving, rows_that_fit
from gptlab.errors import GptlabError
from gptlab.models import CausalLM
from gptlab.models.decode_graph import DecodeStep, fixed_shape_step, has_static_cache

DECODE_MODES = ("auto", "eager", "static", "graph", "compiled")
CPU_ROWS = 64                   # rows sampled at once on a CPU
GPU_ROWS_CAP = 512              # at most this many on CUDA, fewer when the free memory says so

_M64 = (1 << 64) - 1


def row_seed(*parts) -> int:
    """A 63-bit seed from any values (e.g. the job seed, a prompt hash, a sample index)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniforms(seeds, n: int) -> np.ndarray:
    """(len(seeds), n) float32 in (0, 1): value [r, k] depends only on seeds[r] and k (splitmix64)."""
    s = _mix(np.asarray([int(x) & _M64 for x in seeds], dtype=np.uint64))[:, None]
    k = np.arange(1, n + 1, dtype=np.uint64)[None, :]
    z = _mix(s + k * np.uint64(0x9E3779B97F4A7C15))            # uint64 arithmetic wraps, as intended
    return (((z >> np.uint64(40)).astype(np.float32) + 0.5) / np.float32(1 << 24)).astype(np.float32)


@dataclass(frozen=True)
class Request:
    prompt: str
    temperature: float = 0.8
    seed: int = 0


@dataclass
class Completion:
    tokens: list[int]           # generated ids, without the final BOS/end-of-text
    prompt_tokens: int          # prompt length fed to the model (BOS included, after cropping)
    cropped: int = 0            # prompt tokens dropped from the left to fit the context
    stopped: bool = False       # ended by BOS/end-of-text before max_new


def plan_batches(lengths: list[int], max_new: int, max_rows: int, max_spread: int | None = None) -> list[list[int]]:
    """Row indices grouped into batches of <= max_rows whose prompt lengths differ by <= max_spread.
    Deterministic in its inputs, so a job planned twice batches identically."""
    spread = max(8, max_new // 4) if max_spread is None else max_spread
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        b = batches[-1] if batches else None
        if b is None or len(b) >= max_rows or lengths[i] - lengths[b[0]] > spread:
            batches.append([i])
        else:
            b.append(i)
    return batches


def sample_tokens(logits: torch.Tensor, temperature: torch.Tensor, u: torch.Tensor, top_k: int | None = None,
                  top_p: float | None = None, greedy_rows: bool | None = None) -> torch.Tensor:
    """One token per row. logits (B, V) float32, temperature (B,) (<= 0: greedy), u (B,) in (0, 1).
    Sampled rows: softmax(logits / T) restricted to the top_k tokens and then to the smallest set whose
    probability reaches top_p, inverted at u (the first token whose cumulative probability reaches u).
    `greedy_rows`: whether any row is greedy, when the caller knows (saves a device sync per step)."""
    greedy = temperature <= 0
    if greedy_rows is None:
        greedy_rows = bool(greedy.any())
    if greedy_rows and bool(greedy.all()):
        return logits.argmax(dim=-1)
    x = logits / torch.where(greedy, torch.ones_like(temperature), temperature)[:, None]
    if top_k is not None and top_k < x.shape[-1]:
        x, index = x.topk(top_k, dim=-1)                                   # (B, k), sorted descending
    elif top_p is not None and top_p < 1.0:
        x, index = x.sort(dim=-1, descending=True, stable=True)            # (B, V)
    else:
        index = None
    if top_p is not None and top_p < 1.0:
        probs = torch.softmax(x, dim=-1)
        cum = probs.cumsum(dim=-1)
        weights = probs * ((cum - probs) < top_p)                          # the first token always stays
    else:
        weights = torch.exp(x - x.max(dim=-1, keepdim=True).values)       # softmax up to its sum
    j = invert_cdf(weights, u)
    tok = (index.gather(1, j) if index is not None else j).squeeze(1)
    return torch.where(greedy, logits.argmax(dim=-1), tok) if greedy_rows else tok


def invert_cdf(weights: torch.Tensor, u: torch.Tensor, block: int = 256) -> torch.Tensor:
    """(B, 1) index of the first position whose cumulative weight reaches u x the row's total weight.
    weights (B, V) >= 0 with a positive sum (unnormalised probabilities), u (B,) in (0, 1). Never a
    position of zero weight. Two levels for a large V: cumulative sums over blocks of `block` weights find
    the block, then one block's cumulative sum the position: two small scans instead of one over V."""
    B, V = weights.shape
    if V <= 4 * block:
        cdf = weights.cumsum(dim=-1)
        return torch.searchsorted(cdf, (u * cdf[:, -1])[:, None].contiguous()).clamp_(max=V - 1)
    n = -(-V // block)
    blocks = F.pad(weights, (0, n * block - V)).view(B, n, block)
    bcdf = blocks.sum(dim=-1).cumsum(dim=-1)                                 # (B, n)
    target = (u * bcdf[:, -1])[:, None].contiguous()
    b = torch.searchsorted(bcdf, target).clamp_(max=n - 1)                   # (B, 1): the block
    before = torch.where(b > 0, bcdf.gather(1, (b - 1).clamp(min=0)), 0.0)
    icdf = blocks.gather(1, b[:, :, None].expand(B, 1, block)).squeeze(1).cumsum(dim=-1)   # (B, block)
    rest = torch.minimum((target - before).clamp(min=torch.finfo(icdf.dtype).tiny), icdf[:, -1:])
    return b * block + torch.searchsorted(icdf, rest.contiguous())


class Engine:
    """Samples many requests at once from one loaded model (see the module docstring)."""

    def __init__(self, model: CausalLM, tokenizer, *, max_rows: int | None = None,
                 stop_ids: list[int] | None = None, decode: str = "auto"):
        self.model, self.tokenizer = model, tokenizer
        self.device = next(model.parameters()).device
        self.context = int(model.sequence_len)
        self.decode = self._decode_mode(decode)
        self.notes: list[str] = []          # what the engine changed on its own (a graph it could not capture)
        self.max_rows = max_rows or self._default_rows()
        self.fits = 1 << 30                 # rows one batch may hold: lowered by an out-of-memory
        self.stop_ids = stop_ids if stop_ids is not None else \
            ([tokenizer.bos_id] if tokenizer.bos_id is not None else [])
        self.vocab = min(int(model.vocab_size), int(tokenizer.vocab_size))
        try:
            self._logits_from = "logits_from" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            self._logits_from = False

    def _decode_mode(self, decode: str) -> str:
        if decode not in DECODE_MODES:
            raise GptlabError(f"decode mode {decode!r}: expected one of {', '.join(DECODE_MODES)}")
        static = has_static_cache(self.model)
        if decode == "auto":
            return "graph" if static and self.device.type == "cuda" else "eager"
        if decode != "eager" and not static:
            raise GptlabError(f"decode mode {decode!r}: this model family has no static KV cache")
        return decode

    def _default_rows(self) -> int:
        """CPU_ROWS on a CPU; on CUDA the rows whose KV cache (for up to 1,024 positions) and sampling
        temporaries fit in the free memory."""
        if self.device.type != "cuda":
            return CPU_ROWS
        probe = self.model.new_cache(1, min(self.context, 1024))
        kv = sum(t.numel() * t.element_size() for t in (getattr(probe, "k", None), getattr(probe, "v", None))
                 if isinstance(t, torch.Tensor))
        del probe
        return rows_that_fit(kv + 8 * 4 * int(self.model.vocab_size), self.device, GPU_ROWS_CAP, CPU_ROWS)

    def fit(self, prompt: str, max_new: int) -> tuple[list[int], int, int]:
        """(BOS + prompt ids, tokens cropped from the prompt's left, tokens to generate). When prompt +
        max_new exceeds the context, the prompt is cropped (after its BOS) down to context - max_new tokens,
        but never below a quarter of the context: past that, fewer tokens are generated instead."""
        if max_new < 1:
            raise GptlabError(f"max tokens must be at least 1, got {max_new}")
        bos = [self.tokenizer.bos_id] if self.tokenizer.bos_id is not None else []
        body = self.tokenizer.encode(prompt)
        if not body and not bos:
            raise GptlabError("empty prompt, and this tokenizer has no BOS token to start from")
        if self.context < len(bos) + 2:
            raise GptlabError(f"the model's context of {self.context} tokens leaves no room to generate")
        n = len(bos) + len(body)
        if n + max_new <= self.context:
            return bos + body, 0, max_new
        keep = max(self.context - max_new, min(n, self.context // 4), len(bos) + min(1, len(body)))
        cropped = n - keep
        return bos + body[cropped:], cropped, min(max_new, self.context - keep)

    def generate(self, requests: list[Request], max_new: int, *, top_k: int | None = None,
                 top_p: float | None = None, on_batch: Callable[[list[int], list[Completion]], None] | None = None,
                 batches: list[list[int]] | None = None) -> list[Completion]:
        """Completions for every request (in order); `on_batch(indices, completions)` after each batch."""
        _check_sampling(top_k, top_p, [r.temperature for r in requests])
        encoded = [self.fit(r.prompt, max_new) for r in requests]
        if batches is None:
            batches = plan_batches([len(ids) for ids, _, _ in encoded], max_new, self.max_rows)
        out: list[Completion | None] = [None] * len(requests)
        for idx in batches:
            got = self.run_batch([encoded[i][0] for i in idx], [requests[i].temperature for i in idx],
                                 [requests[i].seed for i in idx], [encoded[i][2] for i in idx], top_k=top_k,
                                 top_p=top_p)
            for i, c in zip(idx, got):
                c.cropped = encoded[i][1]
                out[i] = c
            if on_batch is not None:
                on_batch(idx, [out[i] for i in idx])
        return out

    def stream(self, prompt: str, max_new: int, on_text: Callable[[str], None], *, temperature: float = 0.8,
               top_k: int | None = None, top_p: float | None = None, seed: int = 0) -> Completion:
        """One completion, its text passed to `on_text` piece by piece as it is generated."""
        _check_sampling(top_k, top_p, [temperature])
        ids, cropped, max_new = self.fit(prompt, max_new)
        got: list[int] = []
        shown = [""]

        def on_token(row: int, token: int):
            got.append(token)
            text = self.tokenizer.decode(got)
            if not text.endswith("\ufffd"):            # wait for the rest of a multi-byte character
                on_text(text[len(shown[0]):])
                shown[0] = text

        c = self.run_batch([ids], [temperature], [seed], max_new, top_k=top_k, top_p=top_p, on_token=on_token)[0]
        text = self.tokenizer.decode(c.tokens)
        if len(text) > len(shown[0]) and text.startswith(shown[0]):
            on_text(text[len(shown[0]):])
        c.cropped = cropped
        return c

    def _forward(self, idx: torch.Tensor, cache, last_only: bool = True) -> torch.Tensor:
        if last_only and self._logits_from:
            return self.model(idx, cache, logits_from=idx.shape[1] - 1)
        return self.model(idx, cache)

    def run_batch(self, prompts: list[list[int]], temperatures: list[float], seeds: list[int],
                  max_new: int | list[int], *, top_k: int | None = None, top_p: float | None = None,
                  on_token: Callable[[int, int], None] | None = None) -> list[Completion]:
        """Generate up to max_new tokens (one number, or one per row) for each prompt (token ids) in one
        lockstep batch — in halves, should it run out of memory (a row's tokens do not depend on its batch)."""
        news = [max_new] * len(prompts) if isinstance(max_new, int) else list(max_new)
        if not prompts:
            return []
        halving = Halving(min(len(prompts), self.fits), self.device)

        def rows(idx):
            return self._run_rows([prompts[i] for i in idx], [temperatures[i] for i in idx],
                                  [seeds[i] for i in idx], [news[i] for i in idx], top_k, top_p, on_token)

        out = halving.run(rows, list(range(len(prompts))))
        if halving.shrinks:
            self.fits = halving.size
        return out

    def _decode_step(self, cache, batch: int) -> DecodeStep:
        step = fixed_shape_step(lambda x: self._forward(x, cache), cache, batch, self.decode, self.notes)
        self.decode = step.mode             # a graph that could not be captured: eager from now on
        return step

    @torch.inference_mode()
    def _run_rows(self, prompts, temperatures, seeds, news, top_k, top_p, on_token) -> list[Completion]:
        dev, B = self.device, len(prompts)
        lens = [len(p) for p in prompts]
        static = self.decode != "eager"
        lmin = min(lens)
        total = max(n + m for n, m in zip(lens, news))
        longest = max(news)
        if total > self.context:                  # fit() keeps every row within the context
            raise GptlabError(f"prompt + new tokens ({total}) exceed the model's context of {self.context}")
        tok = torch.zeros((B, total), dtype=torch.long)
        for i, p in enumerate(prompts):
            tok[i, :len(p)] = torch.tensor(p, dtype=torch.long)
        tok = tok.to(dev)
        plen = torch.tensor(lens, device=dev)
        temp = torch.tensor(temperatures, dtype=torch.float32, device=dev)
        noise = torch.from_numpy(uniforms(seeds, longest)).to(dev)                  # (B, longest)
        stop = torch.tensor(self.stop_ids or [-1], device=dev)
        end = plen + torch.tensor(news, device=dev)       # exclusive end position of each row's text
        rows = torch.arange(B, device=dev)        # original index of each active row

        pre = lmin - 1                            # positions every row has as prompt, minus the last
        if pre > 0:
            distinct: dict[tuple, int] = {}
            owner = [distinct.setdefault(tuple(p[:pre]), len(distinct)) for p in prompts]
            cache = self._new_cache(len(distinct), total, static)
            shared = torch.tensor(list(distinct), dtype=torch.long, device=dev)         # (U, pre)
            # a model without `logits_from` returns logits for every position: prefill in slices that
            # keep those (U, slice, V) float32 logits under 256 MB
            step = pre if self._logits_from else max(1, (1 << 26) // (len(distinct) * int(self.model.vocab_size)))
            for a in range(0, pre, step):
                self._forward(shared[:, a:a + step], cache)
            if owner != list(range(B)):
                if getattr(cache, "share", None) is not None:
                    cache = cache.share(owner)            # each prompt's keys stay stored once
                else:
                    cache.select(torch.tensor(owner, device=dev))
        else:
            cache = self._new_cache(B, total, static)
        step = self._decode_step(cache, B) if static else None

        finished: dict[int, tuple[torch.Tensor, int]] = {}
        check_every = 1 if dev.type == "cpu" or on_token is not None else 8
        mask_from = self.vocab if self.vocab < int(self.model.vocab_size) else None
        any_greedy = any(t <= 0 for t in temperatures)
        for cur in range(pre, total - 1):
            x = tok[:, cur:cur + 1]
            logits = (step(x) if step is not None else self._forward(x, cache))[:, -1]     # (b, V)
            if mask_from is not None:
                logits[:, mask_from:] = float("-inf")       # padded rows of the head are not tokens
            pos = cur + 1
            k = (pos - plen).clamp(0, longest - 1)
            nxt = sample_tokens(logits, temp, noise.gather(1, k[:, None]).squeeze(1), top_k, top_p, any_greedy)
            gen = pos >= plen
            tok[:, pos] = torch.where(gen, nxt, tok[:, pos])
            end = torch.where(gen & torch.isin(nxt, stop) & (pos < end), pos, end)
            if on_token is not None and bool(gen[0]) and pos < int(end[0]):
                on_token(int(rows[0]), int(nxt[0]))
            if (pos - lmin) % check_every and pos != total - 1:
                continue
            done = end <= pos + 1
            if bool(done.all()):
                for r in range(len(rows)):
                    finished[int(rows[r])] = (tok[r], int(end[r]))
                break
            n_done = int(done.sum())
            if n_done and n_done * 4 >= len(rows) and step is None:    # drop finished rows once they are a
                # quarter (a fixed-shape step keeps its batch: finished rows ride along, ignored)
                keep = (~done).nonzero().squeeze(1)
                for r in done.nonzero().squeeze(1).tolist():
                    finished[int(rows[r])] = (tok[r], int(end[r]))
                cache.select(keep)
                tok, plen, temp, noise, end, rows = (t[keep] for t in (tok, plen, temp, noise, end, rows))
        out = []
        for i in range(B):
            row, e = finished[i]
            ids = row[lens[i]:e].tolist()
            out.append(Completion(ids, lens[i], stopped=e < lens[i] + news[i]))
        return out


    def _new_cache(self, batch: int, max_len: int, static: bool):
        return self.model.new_cache(batch, max_len, static=True) if static else self.model.new_cache(batch, max_len)


def _check_sampling(top_k, top_p, temperatures):
    for t in temperatures:
        if not (t >= 0) or t != t or t == float("inf"):
            raise GptlabError(f"--temperature must be a number >= 0 (0 = greedy), got {t}")
    if top_k is not None and top_k < 1:
        raise GptlabError(f"--top-k must be at least 1, got {top_k}")
    if top_p is not None and not (0.0 < top_p <= 1.0):
        raise GptlabError(f"--top-p must be in (0, 1], got {top_p}")
