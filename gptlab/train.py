"""The training loop: one process, or several through torchrun (PyTorch DDP; rank 0 writes).

    gptlab train demo --out runs/demo                      # CPU, minutes
    gptlab train d12 --out runs/d12 --resume               # continue from the latest complete checkpoint
    torchrun --nproc_per_node=8 -m gptlab train d12        # DDP: NCCL on CUDA, gloo on CPU
    python -m pytest tests/test_train.py tests/test_faults_train.py tests/test_faults_train_kill.py

`Trainer.setup` builds the run (tokenizer, token caches, model, optimizers, resume state); then each step is
`train_step` (a deterministic global batch from gptlab/data.py, reached by gradient accumulation over
micro-batches; on CUDA copied from pinned memory without blocking, bf16 autocast; fp32 on CPU), then maybe `evaluate` (training-time val bpb per domain:
non-overlapping windows of the val stream, special tokens excluded) every `eval_every` steps, a line to
metrics.jsonl (train loss, lr, tokens/s, tokens seen, MFU on CUDA; also to the W&B / TensorBoard runs that
[logging] asks for, gptlab/trackers.py) every `log_every` steps, and maybe `save`
every `save_every` steps and at the end. A non-finite loss stops the run naming the step; the last good
checkpoint stays.

Faults: one training per run directory (an flock, released on any exit); the run's tokenizer and token caches
are rebuilt when what made them changed; `--resume` falls back past a damaged checkpoint (set aside as
checkpoints/.damaged-step_N), drops a torn last metrics line and rebuilds a damaged token cache, one warning
line each; another model shape is one line naming the keys. run.json and metrics.jsonl are rewritten only
once everything is checked, and a failed write (a full disk) is one line naming the file. The run directory's
part (lock, tokenizer, restore, commit) is gptlab/resume.py."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gptlab import __version__
from gptlab.checkpoints import gptlab_run
from gptlab.config import Config, load_config
from gptlab.data import BatchSampler, DomainData, prepare_domains, write_error
from gptlab.devices import host_to_device
from gptlab.distributed import Dist
from gptlab.errors import GptlabError
from gptlab.models.gpt import GPT, GPTConfig
from gptlab.optim import build_optimizers, set_schedule
from gptlab.progress import TrainProgress
from gptlab.resume import check_same_shape, commit_run, get_tokenizer, prepare_run_dir, restore_checkpoint, warn
from gptlab.tokenizer import Tokenizer
from gptlab.trackers import Trackers, train_metrics, training_trackers

PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "4090": 165e12}


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    final_loss: float
    val_bpb: float | None
    checkpoints: list[Path]


def train_from_cli(config, out=None, resume=False, overrides=(), device=None) -> TrainResult:
    cfg = load_config(config, list(overrides))
    return train(cfg, Path(out or Path("runs") / cfg.name), resume=resume, device=device)


@torch.no_grad()
def evaluate_val(model, domains, token_bytes, seq_len, eval_tokens, rows, device, autocast, dist):
    """Training-time val bpb per domain: non-overlapping windows, sum NLL / (ln 2 * bytes of targets)."""
    model.eval()
    tb = torch.as_tensor(token_bytes, dtype=torch.int64, device=device)
    out, tot_nll, tot_bytes = {}, 0.0, 0
    for d in domains:
        if d.val is None or len(d.val) < seq_len + 1:
            continue
        stream = d.val[: eval_tokens + 1] if eval_tokens else d.val
        n_win = (len(stream) - 1) // seq_len
        wins = np.lib.stride_tricks.sliding_window_view(stream[: n_win * seq_len + 1], seq_len + 1)[::seq_len]
        sums = torch.zeros(2, dtype=torch.float64, device=device)
        for i in range(dist.rank * rows, n_win, rows * dist.world):
            batch = host_to_device(wins[i:i + rows].astype(np.int64), device)
            x, y = batch[:, :-1], batch[:, 1:]
            with autocast:
                logits = model(x)
            nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none")
            nbytes = tb[y.reshape(-1)]
            sums[0] += (nll * (nbytes > 0)).sum().double()
            sums[1] += nbytes.sum().double()
        dist.all_reduce(sums)
        if sums[1] > 0:
            out[d.name] = float(sums[0] / (math.log(2) * sums[1]))
            tot_nll, tot_bytes = tot_nll + float(sums[0]), tot_bytes + float(sums[1])
    model.train()
    overall = tot_nll / (math.log(2) * tot_bytes) if tot_bytes else None
    return overall, out


def train(cfg: Config, run_dir: Path, resume: bool = False, device: str | None = None,
          progress: bool = True) -> TrainResult:
    dist = Dist.from_env(device)
    run_dir, lock = Path(run_dir), None
    try:
        lock = prepare_run_dir(run_dir, resume, dist.is_writer)
        return _train(cfg, run_dir, resume, dist, progress)
    finally:
        if lock is not None:
            lock.close()                # releases the run directory (the kernel does it on any exit, too)
        dist.close()


@dataclass
class Trainer:
    """One run's state between steps: what `setup` builds and the phases of the loop use."""
    cfg: Config
    run_dir: Path
    dist: Dist
    tokenizer: Tokenizer
    tok_file: Path
    domains: list[DomainData]
    sampler: BatchSampler
    model: GPT
    train_model: torch.nn.Module        # the model as the step runs it: DDP-wrapped and/or compiled
    optimizers: list[torch.optim.Optimizer]
    token_bytes: np.ndarray
    autocast: torch.autocast
    start_step: int
    checkpoints: list[Path]
    run_config: dict
    metrics_path: Path
    flops_per_token: float
    peak_flops: float | None

    @classmethod
    def setup(cls, cfg: Config, run_dir: Path, resume: bool, dist: Dist) -> Trainer:
        """Tokenizer, token caches, batch sampler, model, optimizers and resume state: all before step one.
        Everything is checked before run.json and metrics.jsonl are rewritten (`commit_run`): a run that cannot
        proceed leaves them as they were."""
        tc, device = cfg.train, dist.device
        if tc.threads:
            torch.set_num_threads(tc.threads)
        dist.barrier()
        ckpt_root = run_dir / "checkpoints"
        if dist.is_writer:
            gptlab_run.clean_leftovers(ckpt_root)
        existing = gptlab_run.list_step_dirs(ckpt_root) if resume else []
        gcfg = GPTConfig.from_model_config(cfg.model)
        if existing:
            check_same_shape(existing, gcfg)
        tokenizer, tok_file = get_tokenizer(cfg, run_dir, dist, keep=bool(existing))
        domains = prepare_domains(cfg.data, tokenizer, run_dir / "tokens", dist.is_writer,
                                  warn=warn if dist.is_writer else None)

        seq_len, rows = cfg.model.sequence_len, tc.device_batch_size
        micro_steps = tc.total_batch_tokens // (rows * seq_len * dist.world)
        if micro_steps < 1 or micro_steps * rows * seq_len * dist.world != tc.total_batch_tokens:
            raise GptlabError(f"train.total_batch_tokens {tc.total_batch_tokens} is not a multiple of "
                              f"device_batch_size x sequence_len x processes = {rows * seq_len * dist.world}")
        sampler = BatchSampler(domains, seq_len, rows, micro_steps, tc.seed, dist.rank, dist.world)

        torch.manual_seed(tc.seed)
        model = GPT(gcfg).to(device)
        model.init_weights(tc.seed)
        optimizers = build_optimizers(model, tc)
        use_bf16 = tc.dtype == "bfloat16" or (tc.dtype == "auto" and device.type == "cuda")
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

        start_step, checkpoints, damaged = 0, [], []
        if existing:
            start_step, checkpoints, damaged = restore_checkpoint(existing, model, optimizers, tokenizer, tok_file,
                                                                  device)
        if start_step >= tc.steps:
            raise GptlabError(f"{run_dir}: already trained to step {start_step} (train.steps = {tc.steps}); "
                              f"raise train.steps to continue")
        run_config = dict(cfg.to_dict(), tokens_per_step=tc.total_batch_tokens, gptlab_version=__version__,
                          world_size=dist.world, data_shares=sampler.domain_shares())
        metrics_path = run_dir / "metrics.jsonl"
        if dist.is_writer:
            rows_logged, torn = gptlab_run.parse_metrics(metrics_path)
            commit_run(run_dir, run_config, metrics_path, rows_logged, torn, start_step, checkpoints, damaged)

        train_model = dist.wrap(model)
        if tc.compile:
            train_model = torch.compile(train_model)
        return cls(cfg=cfg, run_dir=run_dir, dist=dist, tokenizer=tokenizer, tok_file=tok_file, domains=domains,
                   sampler=sampler, model=model, train_model=train_model, optimizers=optimizers,
                   token_bytes=tokenizer.token_bytes(), autocast=autocast, start_step=start_step,
                   checkpoints=checkpoints, run_config=run_config, metrics_path=metrics_path,
                   flops_per_token=model.flops_per_token(), peak_flops=_peak_flops(device))

    def train_step(self, step: int) -> tuple[float, float]:
        """One optimizer step on the global batch of `step`, by gradient accumulation over micro-batches:
        (train loss averaged over processes, lr multiplier)."""
        tc, dist, device = self.cfg.train, self.dist, self.dist.device
        micro_steps = self.sampler.micro_steps
        lr_mult = set_schedule(self.optimizers, step, tc)
        loss_sum = torch.zeros((), device=device)
        for micro in range(micro_steps):
            x, y = (host_to_device(a, device) for a in self.sampler.batch(step, micro))
            with dist.no_sync(self.train_model, last=micro == micro_steps - 1), self.autocast:
                loss = self.train_model(x, targets=y) / micro_steps
            loss.backward()
            loss_sum += loss.detach()
        dist.all_reduce(loss_sum, average=True)
        loss = float(loss_sum)
        # stop before the update: a non-finite loss would poison the weights every later checkpoint holds
        if not math.isfinite(loss):
            good = self.checkpoints[-1].name if self.checkpoints else "none"
            raise GptlabError(f"loss became {loss} at step {step + 1}; stopped (last good checkpoint: {good})")
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        for opt in self.optimizers:
            opt.step()
        self.model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return loss, lr_mult

    def metrics_row(self, done: int, loss: float, lr_mult: float, dt: float) -> dict:
        """The metrics.jsonl line of step `done` (val bpb is added when the step evaluates)."""
        tc = self.cfg.train
        tps = tc.total_batch_tokens / dt
        row = {"step": done, "train_loss": round(loss, 6), "lr_mult": round(lr_mult, 6),
               "lr": self.optimizers[1].param_groups[0]["lr"], "tokens_seen": done * tc.total_batch_tokens,
               "tokens_per_s": round(tps, 1), "dt": round(dt, 4)}
        if self.peak_flops:
            row["mfu"] = round(self.flops_per_token * tps / (self.peak_flops * self.dist.world), 4)
        return row

    def evaluate(self) -> tuple[float | None, dict[str, float]]:
        """Training-time val bpb: (over all domains, per domain)."""
        tc = self.cfg.train
        return evaluate_val(self.model, self.domains, self.token_bytes, self.cfg.model.sequence_len,
                            tc.eval_tokens, tc.device_batch_size, self.dist.device, self.autocast, self.dist)

    def save(self, done: int, loss: float, val_bpb: float | None, val_domains: dict) -> None:
        """A checkpoint of step `done` (rank 0 writes; every rank waits for it at the barrier)."""
        tc = self.cfg.train
        if self.dist.is_writer:
            meta = {"step": done, "tokens_seen": done * tc.total_batch_tokens, "train_loss": loss,
                    "val_bpb": val_bpb, "val_bpb_domains": val_domains,
                    "tokenizer_hash": self.tokenizer.identity(),
                    "data": {d.name: d.train_hash for d in self.domains if d.train_hash},
                    "tokens_per_step": tc.total_batch_tokens, "gptlab_version": __version__,
                    "time": time.time()}
            self.checkpoints.append(gptlab_run.save_checkpoint(self.run_dir, done, self.model, self.optimizers,
                                                               meta, self.run_config, self.tok_file))
        self.dist.barrier()


def _train(cfg: Config, run_dir: Path, resume: bool, dist: Dist, progress: bool) -> TrainResult:
    tc = cfg.train
    t = Trainer.setup(cfg, run_dir, resume, dist)
    bar = TrainProgress(tc.steps, t.start_step, enabled=progress and dist.is_writer)
    loss, val_bpb, val_domains = float("nan"), None, {}
    track = training_trackers(cfg.logging, cfg.name, t.run_config, run_dir) if dist.is_writer else Trackers()
    log = open(t.metrics_path, "a") if dist.is_writer else None
    try:
        for step in range(t.start_step, tc.steps):
            t0 = time.perf_counter()
            loss, lr_mult = t.train_step(step)
            dt = time.perf_counter() - t0
            done = step + 1
            row = t.metrics_row(done, loss, lr_mult, dt)
            # evaluate at every save too, so that each checkpoint's meta.json carries its own val bpb
            if done % tc.eval_every == 0 or done == tc.steps or done % tc.save_every == 0:
                val_bpb, val_domains = t.evaluate()
                row.update(val_bpb=val_bpb, val_bpb_domains=val_domains)
            # log every log_every steps, and every evaluated step and the last, so no val point is lost
            if log and (done % tc.log_every == 0 or "val_bpb" in row or done == tc.steps):
                try:
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                except OSError as e:
                    raise write_error(t.metrics_path, e) from None
                track.log(train_metrics(row), step=done)
            bar.update(done, loss, tc.total_batch_tokens / dt, row["tokens_seen"], val_bpb, row.get("mfu"))
            # save every save_every steps and at the end: a resume restarts from the last one
            if done % tc.save_every == 0 or done == tc.steps:
                t.save(done, loss, val_bpb, val_domains)
    finally:
        bar.close()
        track.close()
        if log:
            log.close()
    return TrainResult(run_dir, tc.steps, loss, val_bpb, t.checkpoints)


def _peak_flops(device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)
