"""The one training loop. Pretraining and fine-tuning differ only by the objective they hand to it.

What the loop owns: devices and DDP, mixed precision, gradient accumulation and clipping, the LR schedule,
non-finite guards, validation, metrics, and checkpoints that let a killed run resume exactly where it stopped.
What an objective owns: its module (the model plus any head), the loss of one batch, and how to write the model.

Exact resume: everything that decides the next update is in the checkpoint: weights, optimizer moments, the
update count (which fixes the LR and the Gumbel temperature), every process's RNG states, and the data position
(the batch after the last one consumed; batch contents and crops are functions of (seed, epoch, position)).
Rerunning the same command on the same output folder continues from the newest checkpoint; on CPU with a fixed
seed the resumed run ends with bitwise the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from ..config import TrainConfig
from ..data import AudioBatchDataset, BucketBatchSampler, DataSource, make_loader
from ..errors import ConfigError, TrainingError
from ..inference import PRECISIONS, cpu_has_native_bf16, resolve_device, resolve_precision
from ..io.atomic import atomic_open, atomic_path
from ..io.checkpoint import safe_torch_load
from .distributed import DistInfo, all_gather_objects, all_reduce_sum, barrier, init_distributed, shutdown
from .schedule import learning_rate

CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.safetensors"
CHECKPOINT_VERSION = 1

# Peak dense bf16 tensor throughput used for model FLOP utilization (MFU), by device name.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


@dataclass
class StepResult:
    """One batch's contribution: `loss` is a sum over the batch's `sample_size` units (targets, frames...)."""

    loss: torch.Tensor
    sample_size: float
    # Additive figures for logging: numbers or 0-d tensors, which stay on the device until the loop reads them
    # all at once per update (one synchronization instead of one per figure and batch).
    sums: dict[str, float | torch.Tensor] = field(default_factory=dict)


class Objective(Protocol):
    """What a training objective provides to the loop (objectives.py has the two there are). Optional extras the
    loop uses when present: `crop` (bool), `after_validation`, `state_dict`/`load_state_dict`,
    `train_flops_per_audio_second`."""

    name: str

    def build(self) -> nn.Module: ...
    def identity(self) -> dict: ...  # settings that must match for a run to resume from a checkpoint
    def start_update(self, module: nn.Module, update: int) -> None: ...
    def step(self, module: nn.Module, batch) -> StepResult: ...
    def summarize(self, sums: dict[str, float]) -> dict[str, float]: ...
    def save_model(self, module: nn.Module, path: Path) -> None: ...
    def validate(self, module: nn.Module, batches, device) -> dict[str, float]: ...


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and conv kernels only; vectors (biases, norm gains, the mask embedding) and the
    quantizer's codebooks are left alone."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "codevectors" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_python_state(state["python"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _as_python_state(state):
    """random.setstate wants tuples; a weights-only load gives back lists for some nesting levels."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def find_checkpoints(output: Path) -> list[Path]:
    """Checkpoints in an output folder, oldest first (their names sort by update)."""
    return sorted((output / CHECKPOINT_DIR).glob("checkpoint_*.pt"))


class MetricsLog:
    """metrics.jsonl: one JSON object per line; on resume, lines past the resumed update are dropped."""

    def __init__(self, path: Path, resume_update: int | None):
        self.path = path
        if resume_update is not None and path.exists():
            kept = []
            for line in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    if json.loads(line).get("update", 0) <= resume_update:
                        kept.append(line)
            with atomic_open(path) as f:
                f.write("".join(line + "\n" for line in kept))
        elif resume_update is None and path.exists():
            path.unlink()

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class Trainer:
    def __init__(
        self,
        objective: Objective,
        train: DataSource,
        cfg: TrainConfig,
        output: Path,
        valid: list[DataSource] | None = None,
        on_event: Callable[[dict], None] | None = None,
        sample_rate: int = 16000,
    ):
        self.objective, self.train_source, self.cfg = objective, train, cfg
        self.output = Path(output)
        self.valid_sources = valid or []
        self.on_event = on_event or (lambda event: None)
        self.sample_rate = sample_rate

    # -- set-up -------------------------------------------------------------------------------------------------

    def _emit(self, kind: str, **data) -> None:
        if self.dist.is_main:
            self.on_event({"event": kind, **data})

    def _setup_device(self) -> None:
        device = resolve_device(self.cfg.device)
        self.dist = init_distributed(device.type == "cuda")
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
        self.device = device
        self.precision = resolve_precision(self.cfg.precision, device)
        if self.precision == "fp16" and device.type != "cuda":
            raise ConfigError("--precision fp16 needs CUDA")
        # fp16 needs loss scaling; bf16 has fp32's range and does not.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")

    def _train_items(self):
        cfg = self.cfg
        utterances = [u for u in self.train_source.utterances if u.num_samples >= cfg.min_sample_size]
        if not utterances:
            raise ConfigError(
                f"--train {self.train_source.name}: no utterance is at least --min-sample-size "
                f"{cfg.min_sample_size} samples ({cfg.min_sample_size / self.sample_rate:.2f} s) long"
            )
        return utterances

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    # -- checkpoints --------------------------------------------------------------------------------------------

    def _load_latest(self) -> dict | None:
        for path in reversed(find_checkpoints(self.output)):
            try:
                state = safe_torch_load(path)
            except Exception as exc:  # a checkpoint from a crashed older version: try the one before
                self._emit("warning", message=f"{path}: unreadable checkpoint, trying an older one ({exc})")
                continue
            if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
                continue
            if state.get("identity") != self.objective.identity():
                raise TrainingError(
                    f"--output {self.output}: holds a {state.get('objective', 'different')} run with another "
                    "model or objective configuration; use a new --output folder to start a new run"
                )
            state["path"] = str(path)
            return state
        return None

    def _save_checkpoint(self, module, optimizer, update: int, position: tuple[int, int], extra: dict) -> None:
        rng = all_gather_objects(_rng_state(self.device), self.dist)  # every rank's RNG, for exact resume
        if not self.dist.is_main:
            return
        state = {
            "version": CHECKPOINT_VERSION,
            "objective": self.objective.name,
            "identity": self.objective.identity(),
            "train_config": self.cfg.to_dict(),
            "update": update,
            "data_position": list(position),
            "model": _unwrap(module).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "world_size": self.dist.world_size,
            **extra,
        }
        folder = self.output / CHECKPOINT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"checkpoint_{update:09d}.pt"
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        for old in find_checkpoints(self.output)[: -self.cfg.keep_last]:
            old.unlink(missing_ok=True)
        # The usable model file beside the checkpoints, kept current.
        self.objective.save_model(_unwrap(module), self.output / MODEL_FILE)
        self._emit("checkpoint", update=update, path=str(path))

    # -- validation ---------------------------------------------------------------------------------------------

    def _validate(self, module, update: int) -> list[dict]:
        results = []
        inner = _unwrap(module)
        was_training = inner.training
        inner.eval()
        # Validation draws its masks from its own seeded RNG so that it does not shift the training RNG streams.
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad(), self._autocast():
            torch.manual_seed(self.cfg.seed)
            for source in self.valid_sources:
                batches = self._valid_batches(source)
                sums = self.objective.validate(inner, batches, self.device)
                totals = all_reduce_sum(list(sums.values()), self.dist, self.device)
                record = {"set": source.name, "update": update,
                          **self.objective.summarize(dict(zip(sums, totals)))}
                results.append(record)
        inner.train(was_training)
        return results

    def _valid_batches(self, source: DataSource):
        cfg = self.cfg
        sizes = [min(u.num_samples, cfg.max_sample_size) for u in source.utterances]
        sampler = BucketBatchSampler(sizes, cfg.max_tokens, seed=cfg.seed, shuffle=False,
                                     num_replicas=self.dist.world_size, rank=self.dist.rank)
        dataset = AudioBatchDataset(source.utterances, self.sample_rate, cfg.max_sample_size, cfg.seed,
                                    crop=getattr(self.objective, "crop", True))
        for batch_indices in sampler.batches(0):
            batch = dataset[(0, 0, batch_indices)]
            if batch.lengths.numel():
                yield batch.to(self.device)

    # -- the loop -----------------------------------------------------------------------------------------------

    def run(self) -> dict:
        try:
            summary = self._run()
            # Ranks leave together: gloo aborts a process that tears its group down after a peer already left
            # ("terminate called without an active exception").
            barrier(self.dist)
            return summary
        finally:
            shutdown(self.dist) if hasattr(self, "dist") else None

    def _run(self) -> dict:
        cfg = self.cfg
        self._setup_device()
        utterances = self._train_items()
        if self.dist.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
        barrier(self.dist)
        resume = self._load_latest()
        if resume is not None and resume.get("world_size", 1) != self.dist.world_size:
            raise TrainingError(
                f"--output {self.output}: the run was started with {resume['world_size']} processes and is now "
                f"resumed with {self.dist.world_size}; resume with the same number (data order depends on it)"
            )

        # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
        torch.manual_seed(cfg.seed)
        module = self.objective.build().to(self.device)
        module.train()
        inner = module
        if cfg.activation_checkpointing:
            inner.model.transformer.activation_checkpointing = True  # every objective's module holds .model
        optimizer = torch.optim.AdamW(
            _param_groups(module, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
            fused=self.device.type == "cuda",
        )
        update, position = 0, (0, 0)
        if resume is not None:
            module.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
            self.scaler.load_state_dict(resume["scaler"])
            update, position = resume["update"], tuple(resume["data_position"])
            if "objective_state" in resume and hasattr(self.objective, "load_state_dict"):
                self.objective.load_state_dict(resume["objective_state"])
        if self.dist.enabled:
            # Layerdrop and partly frozen models leave some parameters without gradients in some updates.
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )

        sizes = [min(u.num_samples, cfg.max_sample_size) for u in utterances]
        sampler = BucketBatchSampler(sizes, cfg.max_tokens, seed=cfg.seed, shuffle=True,
                                     num_replicas=self.dist.world_size, rank=self.dist.rank)
        sampler.set_position(*position)
        dataset = AudioBatchDataset(utterances, self.sample_rate, cfg.max_sample_size, cfg.seed,
                                    crop=getattr(self.objective, "crop", True))
        loader = iter(make_loader(dataset, sampler, cfg.num_workers, pin_memory=self.device.type == "cuda"))
        # RNG streams are set after the loader exists, so nothing it does can shift them.
        if resume is not None:
            _set_rng_state(resume["rng"][self.dist.rank], self.device)
        else:
            torch.manual_seed(cfg.seed * 1000 + self.dist.rank)
            random.seed(cfg.seed * 1000 + self.dist.rank)

        metrics = MetricsLog(self.output / METRICS_FILE, update if resume else None) if self.dist.is_main else None
        tensorboard = self._tensorboard() if self.dist.is_main else None
        self._emit(
            "start", update=update, max_updates=cfg.max_updates, resumed_from=resume and resume["path"],
            parameters=sum(p.numel() for p in inner.parameters()),
            trainable=sum(p.numel() for p in inner.parameters() if p.requires_grad),
            utterances=len(utterances), hours=sum(u.num_samples for u in utterances) / self.sample_rate / 3600,
            left_out=len(self.train_source.utterances) - len(utterances), batches_per_epoch=len(sampler),
            device=str(self.device), precision=self.precision, world_size=self.dist.world_size,
        )
        if self.precision == "bf16" and self.device.type == "cpu" and cpu_has_native_bf16() is False:
            self._emit("warning", message="--precision bf16 on a CPU without AVX512-BF16 or AMX is emulated and "
                                          "several times slower than fp32; use --precision fp32 here")
        del resume

        params = [p for p in inner.parameters() if p.requires_grad]
        interval: dict[str, float] = {}
        interval_start, interval_audio = time.perf_counter(), 0.0
        bad_in_a_row, skipped_files, skipped_updates = 0, 0, 0
        valid_results: list[dict] = []
        last_saved = update
        flops_per_audio_second = getattr(self.objective, "train_flops_per_audio_second", lambda: None)()

        while update < cfg.max_updates:
            self.objective.start_update(inner, update)
            lr = learning_rate(update, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            sums: dict[str, float] = {}
            sample_size, audio_samples, ids = 0.0, 0, []
            try:
                for micro in range(cfg.update_freq):
                    batch = next(loader)
                    position = (batch.epoch, batch.position + 1)
                    for item, reason in batch.skipped:
                        skipped_files += 1
                        self._emit("skipped_file", item=item, reason=reason)
                    weight = 1.0
                    if batch.lengths.numel() == 0:
                        # Every file of this batch failed to decode. A silent stand-in with zero weight keeps
                        # this process in step with the others (DDP needs a backward from every rank).
                        batch, weight = self._stand_in(batch), 0.0
                    audio_samples += int(batch.lengths.sum()) * weight  # on the host: no device sync
                    batch = batch.to(self.device, non_blocking=True)
                    ids.extend(batch.ids)
                    sync = micro == cfg.update_freq - 1 or not self.dist.enabled
                    with contextlib.nullcontext() if sync else module.no_sync():
                        with self._autocast():
                            result = self.objective.step(module, batch)
                        if weight == 0.0:
                            result = StepResult(torch.nan_to_num(result.loss) * 0.0, 0.0, {})
                        self.scaler.scale(result.loss).backward()
                    sample_size += result.sample_size
                    for key, value in result.sums.items():
                        sums[key] = sums.get(key, 0.0) + value
            except torch.OutOfMemoryError:
                raise TrainingError(
                    f"out of memory on {self.device} at update {update + 1} with --max-tokens {cfg.max_tokens}: "
                    "lower --max-tokens (and raise --update-freq to keep the samples per update), or use "
                    "--activation-checkpointing"
                ) from None

            # Gradients are sums over this process's units; DDP averaged them over processes. Dividing by the
            # global unit count gives the per-unit mean over the whole update, whatever the batch split.
            keys = sorted(sums)
            totals = all_reduce_sum([sample_size, float(audio_samples)] + [sums[k] for k in keys],
                                    self.dist, self.device)
            global_size, global_audio = totals[0], totals[1]
            sums = dict(zip(keys, totals[2:]))
            self.scaler.unscale_(optimizer)
            if global_size > 0:
                scale = self.dist.world_size / global_size
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(scale)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm or math.inf))
            loss_value = sums.get("loss", 0.0) / global_size if global_size else 0.0
            finite = math.isfinite(grad_norm) and math.isfinite(loss_value)
            if global_size > 0 and finite:
                self.scaler.step(optimizer)
                bad_in_a_row = 0
            elif not finite:
                bad_in_a_row += 1
                skipped_updates += 1
                self._emit("nonfinite", update=update + 1, loss=loss_value, grad_norm=grad_norm, ids=ids)
                if bad_in_a_row >= cfg.max_bad_updates:
                    raise TrainingError(
                        f"{bad_in_a_row} updates in a row had a non-finite loss or gradient (last at update "
                        f"{update + 1}, utterances {', '.join(ids[:5])}{'...' if len(ids) > 5 else ''}); "
                        "lower --lr, check the data, or use --precision fp32"
                    )
            if self.scaler.is_enabled():
                self.scaler.update()
            optimizer.zero_grad(set_to_none=True)
            update += 1

            if finite:
                for key, value in sums.items():
                    interval[key] = interval.get(key, 0.0) + value
                interval["sample_size"] = interval.get("sample_size", 0.0) + global_size
                interval["grad_norm_sum"] = interval.get("grad_norm_sum", 0.0) + grad_norm
                interval["updates"] = interval.get("updates", 0.0) + 1
            interval_audio += global_audio

            if update % cfg.log_every == 0 or update == cfg.max_updates:
                elapsed = max(time.perf_counter() - interval_start, 1e-9)
                record = {"update": update, **self._summarize(interval), "lr": lr,
                          "audio_seconds_per_second": interval_audio / self.sample_rate / elapsed,
                          "skipped_files": skipped_files, "skipped_updates": skipped_updates,
                          "time": round(time.time(), 1)}
                if flops_per_audio_second and self.device.type == "cuda":
                    peak = self._peak_flops()
                    if peak:
                        per_device = record["audio_seconds_per_second"] / self.dist.world_size
                        record["mfu"] = per_device * flops_per_audio_second / peak
                if self.device.type == "cuda":
                    record["gpu_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
                if metrics:
                    metrics.write(record)
                if tensorboard:
                    for key, value in record.items():
                        if key not in ("update", "time") and isinstance(value, (int, float)):
                            tensorboard.add_scalar(f"train/{key}", value, update)
                self._emit("log", **record)
                interval, interval_start, interval_audio = {}, time.perf_counter(), 0.0

            if self.valid_sources and (update % cfg.valid_every == 0 or update == cfg.max_updates):
                valid_results = self._validate(module, update)
                self.objective_after_validation(valid_results, inner)
                for record in valid_results:
                    if metrics:
                        metrics.write({"update": update, "valid": record, "time": round(time.time(), 1)})
                    if tensorboard:
                        for key, value in record.items():
                            if isinstance(value, (int, float)) and key != "update":
                                tensorboard.add_scalar(f"valid/{record['set']}/{key}", value, update)
                self._emit("valid", update=update, results=valid_results)

            if update % cfg.save_every == 0 or update == cfg.max_updates:
                self._save_checkpoint(module, optimizer, update, position, self.objective_state())
                last_saved = update

        if last_saved != update or not (self.output / MODEL_FILE).exists():
            self._save_checkpoint(module, optimizer, update, position, self.objective_state())
        in_sync = self._ranks_in_sync(inner)
        if tensorboard:
            tensorboard.close()
        summary = {"update": update, "model": str(self.output / MODEL_FILE), "skipped_files": skipped_files,
                   "skipped_updates": skipped_updates, "valid": valid_results, "world_size": self.dist.world_size,
                   "ranks_in_sync": in_sync}
        self._emit("end", **summary)
        return summary

    def _stand_in(self, batch):
        samples = max(self.cfg.min_sample_size, 2 * self.sample_rate)
        return dataclasses.replace(batch, waveforms=torch.zeros(1, samples),
                                   lengths=torch.tensor([samples]), ids=[], texts=[None])

    # Hooks an objective may use (fine-tuning keeps its best checkpoint by validation WER).
    def objective_after_validation(self, results: list[dict], module: nn.Module) -> None:
        hook = getattr(self.objective, "after_validation", None)
        if hook and self.dist.is_main:
            hook(results, module, self.output)

    def objective_state(self) -> dict:
        state = getattr(self.objective, "state_dict", None)
        return {"objective_state": state()} if state else {}

    def _summarize(self, interval: dict[str, float]) -> dict[str, float]:
        if not interval.get("updates"):
            return {"loss": float("nan")}
        out = self.objective.summarize(interval)
        out["grad_norm"] = interval["grad_norm_sum"] / interval["updates"]
        return out

    def _peak_flops(self) -> float | None:
        name = torch.cuda.get_device_name(self.device)
        return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)

    def _tensorboard(self):
        if not self.cfg.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        return SummaryWriter(str(self.output / "tensorboard"))

    def _ranks_in_sync(self, module: nn.Module) -> bool:
        """After DDP training every process must hold the same weights; a cheap checksum comparison says so."""
        if not self.dist.enabled:
            return True
        with torch.no_grad():
            checksum = float(sum(p.double().sum() for p in module.parameters()))
        sums = all_gather_objects(checksum, self.dist)
        return all(s == sums[0] for s in sums)


def check_output_dir(output: Path) -> None:
    """Fail before any work when the output folder cannot be used."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output}: exists and is not a folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--output {output}: cannot create ({exc.strerror or exc})") from None


__all__ = ["DistInfo", "MODEL_FILE", "METRICS_FILE", "Objective", "StepResult", "Trainer", "check_output_dir",
           "find_checkpoints"]
