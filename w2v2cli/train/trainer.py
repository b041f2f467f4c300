"""The one training loop. Pretraining and fine-tuning differ only by the objective they hand to it.

What the loop owns: devices and DDP, mixed precision, gradient accumulation and clipping, the LR schedule,
non-finite guards, validation, metrics, and checkpoints that let a killed run resume exactly where it stopped.
What an objective owns (objectives.py): its module (the model plus any head), the loss of one batch, and how
to write the model.

Exact resume: everything that decides the next update is in the checkpoint: weights, optimizer moments, the
update count (which fixes the LR and the Gumbel temperature), every process's RNG states, and the data position
(the batch after the last one consumed; batch contents and crops are functions of (seed, epoch, position)).
Rerunning the same command on the same output folder continues from the newest checkpoint; on CPU with a fixed
seed the resumed run ends with bitwise the same weights as an uninterrupted one.

Several processes (torchrun): every collective (DDP's gradient all-reduce, the loop's all-reduce of figures,
the gathers at checkpoints and at the end) must be reached by every rank in the same order. So each decision
that leads to one is taken from state all ranks share (the update count, the config, all-reduced figures), or
on rank 0 and broadcast (which checkpoint to resume from); never from what one process sees on its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..data import AudioBatchDataset, Batch, BucketBatchSampler, DataSource, make_loader
from ..errors import ConfigError, TrainingError
from ..inference import PRECISIONS, cpu_has_native_bf16, resolve_device, resolve_precision
from ..io.atomic import atomic_open, atomic_path
from ..io.checkpoint import safe_torch_load
from .config import TrainConfig
from .distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    broadcast_from_main,
    init_distributed,
    shutdown,
)
from .objectives import Objective, StepResult
from .schedule import learning_rate

CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.safetensors"
CHECKPOINT_VERSION = 1

# Peak dense bf16 tensor throughput used for model FLOP utilization (MFU), by device name.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


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


@dataclass
class Progress:
    """Where the run stands between updates: what a checkpoint records (update, position), the run's counters,
    and the sums of the current log interval."""

    update: int = 0  # updates finished
    position: tuple[int, int] = (0, 0)  # (epoch, batch) after the last batch consumed: where a resume starts
    bad_in_a_row: int = 0  # consecutive updates skipped for a non-finite loss or gradient
    skipped_files: int = 0
    skipped_updates: int = 0
    interval: dict[str, float] = field(default_factory=dict)  # figures summed since the last log line
    interval_start: float = 0.0  # time.perf_counter() at the start of the interval
    interval_audio: float = 0.0  # samples trained on since the last log line, all processes together
    valid_results: list[dict] = field(default_factory=list)  # the latest validation's records


@dataclass
class UpdateFigures:
    """What one update leaves for the log, summed over all processes."""

    lr: float
    sums: dict[str, float]  # the objective's train_sums
    sample_size: float  # the loss's units (targets, utterances)
    audio_samples: float
    grad_norm: float
    finite: bool  # False: the update was skipped


@dataclass
class ValidSet:
    name: str
    sampler: BucketBatchSampler
    dataset: AudioBatchDataset


class Trainer:
    """Trains `objective` on `train` until cfg.max_updates, validating on `valid`, logging to metrics.jsonl
    and checkpointing in `output`. `run()` is all of it; `_run` reads top to bottom."""

    def __init__(
        self,
        objective: Objective,
        train: DataSource,
        cfg: TrainConfig,
        output: Path,
        valid: list[DataSource] | None = None,
        on_event: Callable[[dict], None] | None = None,
    ):
        self.objective, self.train_source, self.cfg = objective, train, cfg
        self.output = Path(output)
        self.valid_sources = valid or []
        self.on_event = on_event or (lambda event: None)
        self.sample_rate = objective.sample_rate

    def run(self) -> dict:
        try:
            summary = self._run()
            # Ranks leave together: gloo aborts a process that tears its group down after a peer already left
            # ("terminate called without an active exception").
            barrier(self.dist)
            return summary
        finally:
            # The DDP wrapper's reducer holds work handles of the process group: drop it before the group goes,
            # so nothing of the group is left for the interpreter's exit to tear down.
            if hasattr(self, "inner"):
                self.module = self.inner
                gc.collect()
            if hasattr(self, "dist"):
                shutdown(self.dist)

    def _run(self) -> dict:
        self._setup()  # device and process group, data, output folder
        resume = self._resume_point()  # the newest checkpoint's state; None for a new run
        progress = self._build(resume)  # module and optimizer, restored when resuming
        loader = self._train_loader(progress.position)
        self._seed_rng(resume)  # after the loader exists: nothing it does can shift the RNG streams
        self._start(progress, resume)  # metrics.jsonl, TensorBoard, the start event
        del resume  # its tensors are in the module and optimizer now
        while progress.update < self.cfg.max_updates:
            figures = self._train_update(loader, progress)
            self._log(figures, progress)
            if self.valid_sets and self._due(self.cfg.valid_every, progress.update):
                self._validate(progress)
            if self._due(self.cfg.save_every, progress.update):
                self._save_checkpoint(progress)
        return self._finish(progress)

    def _due(self, every: int, update: int) -> bool:
        """Every `every` updates and after the last one; the same answer on every rank."""
        return update % every == 0 or update == self.cfg.max_updates

    def _emit(self, kind: str, **data) -> None:
        if self.dist.is_main:
            self.on_event({"event": kind, **data})

    # -- set-up -------------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.cfg
        device = resolve_device(cfg.device)
        self.dist = init_distributed(device.type == "cuda")
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
        self.device = device
        self.precision = resolve_precision(cfg.precision, device)
        if self.precision == "fp16" and device.type != "cuda":
            raise ConfigError("precision fp16 needs CUDA")
        # fp16 needs loss scaling; bf16 has fp32's range and does not.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.train_items = [u for u in self.train_source.utterances if u.num_samples >= cfg.min_sample_size]
        if not self.train_items:
            raise ConfigError(
                f"train {self.train_source.name}: no utterance is at least min_sample_size "
                f"{cfg.min_sample_size} samples ({cfg.min_sample_size / self.sample_rate:.2f} s) long"
            )
        self.valid_sets = [self._valid_set(source) for source in self.valid_sources]
        if self.dist.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
        barrier(self.dist)

    def _valid_set(self, source: DataSource) -> ValidSet:
        cfg = self.cfg
        sizes = [min(u.num_samples, cfg.max_sample_size) for u in source.utterances]
        sampler = BucketBatchSampler(sizes, cfg.max_tokens, seed=cfg.seed, shuffle=False,
                                     num_replicas=self.dist.world_size, rank=self.dist.rank)
        dataset = AudioBatchDataset(source.utterances, self.sample_rate, cfg.max_sample_size, cfg.seed,
                                    crop=self.objective.crop)
        return ValidSet(source.name, sampler, dataset)

    def _resume_point(self) -> dict | None:
        """The newest usable checkpoint's state, or None. Rank 0 chooses and tells the others: ranks that each
        looked at the folder themselves could resume from different updates and fall out of step."""
        state, problem = None, None
        if self.dist.is_main:
            try:
                state = self._newest_checkpoint()
            except TrainingError as exc:
                problem = str(exc)
        path, problem = broadcast_from_main((state and state["path"], problem), self.dist)
        if problem:
            raise TrainingError(problem)
        if path is None:
            return None
        if state is None:
            state = safe_torch_load(path)
            state["path"] = path
        if state.get("world_size", 1) != self.dist.world_size:
            raise TrainingError(
                f"output {self.output}: the run was started with {state['world_size']} processes and is now "
                f"resumed with {self.dist.world_size}; resume with the same number (data order depends on it)"
            )
        return state

    def _newest_checkpoint(self) -> dict | None:
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
                    f"output {self.output}: holds a {state.get('objective', 'different')} run with another "
                    "model or objective configuration; use a new output folder to start a new run"
                )
            state["path"] = str(path)
            return state
        return None

    def _build(self, resume: dict | None) -> Progress:
        """The module (self.inner; self.module is its DDP wrapper when there are several processes) and the
        optimizer, restored from `resume` when given."""
        cfg = self.cfg
        # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
        torch.manual_seed(cfg.seed)
        inner = self.objective.build().to(self.device)
        inner.train()
        if cfg.activation_checkpointing:
            inner.model.transformer.activation_checkpointing = True  # every objective's module holds .model
        self.optimizer = torch.optim.AdamW(
            _param_groups(inner, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
            fused=self.device.type == "cuda",
        )
        progress = Progress()
        if resume is not None:
            inner.load_state_dict(resume["model"])
            self.optimizer.load_state_dict(resume["optimizer"])
            self.scaler.load_state_dict(resume["scaler"])
            self.objective.load_state_dict(resume.get("objective_state", {}))
            progress = Progress(update=resume["update"], position=tuple(resume["data_position"]))
        self.inner = self.module = inner
        self.params = [p for p in inner.parameters() if p.requires_grad]
        if self.dist.enabled:
            # Layerdrop and partly frozen models leave some parameters without gradients in some updates.
            self.module = nn.parallel.DistributedDataParallel(
                inner, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        return progress

    def _train_loader(self, position: tuple[int, int]) -> Iterator[Batch]:
        cfg = self.cfg
        sizes = [min(u.num_samples, cfg.max_sample_size) for u in self.train_items]
        sampler = BucketBatchSampler(sizes, cfg.max_tokens, seed=cfg.seed, shuffle=True,
                                     num_replicas=self.dist.world_size, rank=self.dist.rank)
        sampler.set_position(*position)
        self.batches_per_epoch = len(sampler)
        dataset = AudioBatchDataset(self.train_items, self.sample_rate, cfg.max_sample_size, cfg.seed,
                                    crop=self.objective.crop)
        return iter(make_loader(dataset, sampler, cfg.num_workers, pin_memory=self.device.type == "cuda"))

    def _seed_rng(self, resume: dict | None) -> None:
        if resume is not None:
            _set_rng_state(resume["rng"][self.dist.rank], self.device)
        else:
            torch.manual_seed(self.cfg.seed * 1000 + self.dist.rank)
            random.seed(self.cfg.seed * 1000 + self.dist.rank)

    def _start(self, progress: Progress, resume: dict | None) -> None:
        cfg, inner = self.cfg, self.inner
        main = self.dist.is_main
        self.metrics = MetricsLog(self.output / METRICS_FILE, progress.update if resume else None) if main else None
        self.tensorboard = self._tensorboard() if main else None
        self._emit(
            "start", update=progress.update, max_updates=cfg.max_updates, resumed_from=resume and resume["path"],
            parameters=sum(p.numel() for p in inner.parameters()),
            trainable=sum(p.numel() for p in inner.parameters() if p.requires_grad),
            utterances=len(self.train_items),
            hours=sum(u.num_samples for u in self.train_items) / self.sample_rate / 3600,
            left_out=len(self.train_source.utterances) - len(self.train_items),
            batches_per_epoch=self.batches_per_epoch, device=str(self.device), precision=self.precision,
            world_size=self.dist.world_size,
        )
        if self.precision == "bf16" and self.device.type == "cpu" and cpu_has_native_bf16() is False:
            self._emit("warning", message="precision bf16 on a CPU without AVX512-BF16 or AMX is emulated and "
                                          "several times slower than fp32; use fp32 here")
        self.flops_per_audio_second = self.objective.train_flops_per_audio_second()
        progress.interval_start = time.perf_counter()

    def _tensorboard(self):
        if not self.cfg.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("tensorboard needs the tensorboard package: pip install tensorboard") from None
        return SummaryWriter(str(self.output / "tensorboard"))

    # -- one update ---------------------------------------------------------------------------------------------

    def _train_update(self, loader: Iterator[Batch], progress: Progress) -> UpdateFigures:
        """update_freq batches forward and backward, the gradients averaged over every unit of every process,
        clipped and applied; skipped instead when the loss or gradient is not finite."""
        cfg = self.cfg
        self.objective.start_update(self.inner, progress.update)
        lr = learning_rate(progress.update, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        sample_size, audio_samples, sums, ids = self._accumulate(loader, progress)
        # Gradients are sums over this process's units; DDP averaged them over processes. Dividing by the
        # global unit count gives the per-unit mean over the whole update, whatever the batch split.
        keys = self.objective.train_sums
        totals = all_reduce_sum([sample_size, float(audio_samples)] + [sums.get(k, 0.0) for k in keys],
                                self.dist, self.device)
        global_size, global_audio, sums = totals[0], totals[1], dict(zip(keys, totals[2:]))
        grad_norm = self._unscale_and_clip(global_size)
        loss_value = sums.get("loss", 0.0) / global_size if global_size else 0.0
        # All-reduced figures and DDP-averaged gradients are the same on every rank, so every rank takes the
        # same branch here: they step, skip or give up together.
        finite = math.isfinite(grad_norm) and math.isfinite(loss_value)
        if global_size > 0 and finite:
            self.scaler.step(self.optimizer)
            progress.bad_in_a_row = 0
        elif not finite:
            self._skip_update(progress, loss_value, grad_norm, ids)
        if self.scaler.is_enabled():
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        progress.update += 1
        return UpdateFigures(lr, sums, global_size, global_audio, grad_norm, finite)

    def _accumulate(self, loader: Iterator[Batch], progress: Progress) -> tuple[float, float, dict, list[str]]:
        """Forward and backward over update_freq batches; this process's (loss units, audio samples, sums,
        utterance ids)."""
        cfg = self.cfg
        sums: dict[str, float | torch.Tensor] = {}
        sample_size, audio_samples, ids = 0.0, 0, []
        try:
            for micro in range(cfg.update_freq):
                batch, weight = self._next_batch(loader, progress)
                audio_samples += int(batch.lengths.sum()) * weight  # on the host: no device sync
                batch = batch.to(self.device, non_blocking=True)
                ids.extend(batch.ids)
                # DDP all-reduces the gradients in the update's last backward only.
                sync = micro == cfg.update_freq - 1 or not self.dist.enabled
                with contextlib.nullcontext() if sync else self.module.no_sync():
                    with self._autocast():
                        result = self.objective.step(self.module, batch)
                    if weight == 0.0:
                        result = StepResult(torch.nan_to_num(result.loss) * 0.0, 0.0, {})
                    self.scaler.scale(result.loss).backward()
                sample_size += result.sample_size
                for key, value in result.sums.items():
                    sums[key] = sums.get(key, 0.0) + value
        except torch.OutOfMemoryError:
            raise TrainingError(
                f"out of memory on {self.device} at update {progress.update + 1} with max_tokens {cfg.max_tokens}: "
                "lower max_tokens (and raise update_freq to keep the samples per update), or use "
                "activation_checkpointing"
            ) from None
        return sample_size, audio_samples, sums, ids

    def _next_batch(self, loader: Iterator[Batch], progress: Progress) -> tuple[Batch, float]:
        """The next batch and its weight in the update. When every file of a batch failed to decode, a silent
        stand-in with weight 0 keeps this process in step with the others (DDP needs a backward from each)."""
        batch = next(loader)
        progress.position = (batch.epoch, batch.position + 1)
        for item, reason in batch.skipped:
            progress.skipped_files += 1
            self._emit("skipped_file", item=item, reason=reason)
        if batch.lengths.numel() == 0:
            return self._stand_in(batch), 0.0
        return batch, 1.0

    def _stand_in(self, batch: Batch) -> Batch:
        samples = max(self.cfg.min_sample_size, 2 * self.sample_rate)
        labels = {} if batch.targets is None else {"targets": torch.zeros(1, 1, dtype=torch.int64),
                                                   "target_lengths": torch.zeros(1, dtype=torch.int64)}
        return dataclasses.replace(batch, waveforms=torch.zeros(1, samples), lengths=torch.tensor([samples]),
                                   ids=[], **labels)

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    def _unscale_and_clip(self, global_size: float) -> float:
        """Turns the summed gradients into per-unit means over the update and clips them; their norm."""
        self.scaler.unscale_(self.optimizer)
        if global_size > 0:
            scale = self.dist.world_size / global_size
            for p in self.params:
                if p.grad is not None:
                    p.grad.mul_(scale)
        return float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip_norm or math.inf))

    def _skip_update(self, progress: Progress, loss_value: float, grad_norm: float, ids: list[str]) -> None:
        progress.bad_in_a_row += 1
        progress.skipped_updates += 1
        self._emit("nonfinite", update=progress.update + 1, loss=loss_value, grad_norm=grad_norm, ids=ids)
        if progress.bad_in_a_row >= self.cfg.max_bad_updates:
            raise TrainingError(
                f"{progress.bad_in_a_row} updates in a row had a non-finite loss or gradient (last at update "
                f"{progress.update + 1}, utterances {', '.join(ids[:5])}{'...' if len(ids) > 5 else ''}); "
                "lower the learning rate, check the data, or train in fp32 precision"
            )

    # -- logging ------------------------------------------------------------------------------------------------

    def _log(self, figures: UpdateFigures, progress: Progress) -> None:
        """Adds the update to the log interval; every log_every updates, writes the interval's line."""
        interval = progress.interval
        if figures.finite:
            for key, value in figures.sums.items():
                interval[key] = interval.get(key, 0.0) + value
            interval["sample_size"] = interval.get("sample_size", 0.0) + figures.sample_size
            interval["grad_norm_sum"] = interval.get("grad_norm_sum", 0.0) + figures.grad_norm
            interval["updates"] = interval.get("updates", 0.0) + 1
        progress.interval_audio += figures.audio_samples
        if not self._due(self.cfg.log_every, progress.update):
            return
        record = self._train_record(figures.lr, progress)
        if self.metrics:
            self.metrics.write(record)
        self._scalars("train", record, progress.update, skip=("update", "time"))
        self._emit("log", **record)
        progress.interval, progress.interval_start, progress.interval_audio = {}, time.perf_counter(), 0.0

    def _train_record(self, lr: float, progress: Progress) -> dict:
        elapsed = max(time.perf_counter() - progress.interval_start, 1e-9)
        record = {"update": progress.update, **self._summarize(progress.interval), "lr": lr,
                  "audio_seconds_per_second": progress.interval_audio / self.sample_rate / elapsed,
                  "skipped_files": progress.skipped_files, "skipped_updates": progress.skipped_updates,
                  "time": round(time.time(), 1)}
        if self.flops_per_audio_second and self.device.type == "cuda":
            peak = self._peak_flops()
            if peak:
                per_device = record["audio_seconds_per_second"] / self.dist.world_size
                record["mfu"] = per_device * self.flops_per_audio_second / peak
        if self.device.type == "cuda":
            record["gpu_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return record

    def _summarize(self, interval: dict[str, float]) -> dict[str, float]:
        if not interval.get("updates"):
            return {"loss": float("nan")}
        out = self.objective.summarize(interval)
        out["grad_norm"] = interval["grad_norm_sum"] / interval["updates"]
        return out

    def _peak_flops(self) -> float | None:
        name = torch.cuda.get_device_name(self.device)
        return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)

    def _scalars(self, prefix: str, record: dict, update: int, skip: tuple[str, ...]) -> None:
        if self.tensorboard:
            for key, value in record.items():
                if key not in skip and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"{prefix}/{key}", value, update)

    # -- validation ---------------------------------------------------------------------------------------------

    def _validate(self, progress: Progress) -> None:
        update = progress.update
        progress.valid_results = results = self._evaluate(update)
        if self.dist.is_main:  # fine-tuning keeps its best model by validation WER
            self.objective.after_validation(results, self.inner, self.output)
        for record in results:
            if self.metrics:
                self.metrics.write({"update": update, "valid": record, "time": round(time.time(), 1)})
            self._scalars(f"valid/{record['set']}", record, update, skip=("update",))
        self._emit("valid", update=update, results=results)

    def _evaluate(self, update: int) -> list[dict]:
        """One record per validation set: the objective's figures over the whole set, all processes."""
        results = []
        inner = self.inner
        was_training = inner.training
        inner.eval()
        keys = self.objective.valid_sums
        # Validation draws its masks from its own seeded RNG so that it does not shift the training RNG streams.
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad(), self._autocast():
            torch.manual_seed(self.cfg.seed)
            for valid_set in self.valid_sets:
                sums = self.objective.validate(inner, self._valid_batches(valid_set))
                totals = all_reduce_sum([sums.get(k, 0.0) for k in keys], self.dist, self.device)
                results.append({"set": valid_set.name, "update": update,
                                **self.objective.summarize(dict(zip(keys, totals)))})
        inner.train(was_training)
        return results

    def _valid_batches(self, valid_set: ValidSet) -> Iterator[Batch]:
        for batch_indices in valid_set.sampler.batches(0):
            batch = valid_set.dataset[(0, 0, batch_indices)]
            if batch.lengths.numel():
                yield batch.to(self.device)

    # -- checkpoints and the end --------------------------------------------------------------------------------

    def _save_checkpoint(self, progress: Progress) -> None:
        """A checkpoint of the run (all ranks take part: each one's RNG state is in it) and the model file."""
        rng = all_gather_objects(_rng_state(self.device), self.dist)  # every rank's RNG, for exact resume
        if not self.dist.is_main:
            return
        state = {
            "version": CHECKPOINT_VERSION,
            "objective": self.objective.name,
            "identity": self.objective.identity(),
            "train_config": self.cfg.to_dict(),
            "update": progress.update,
            "data_position": list(progress.position),
            "model": self.inner.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "world_size": self.dist.world_size,
            "objective_state": self.objective.state_dict(),
        }
        folder = self.output / CHECKPOINT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"checkpoint_{progress.update:09d}.pt"
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        for old in find_checkpoints(self.output)[: -self.cfg.keep_last]:
            old.unlink(missing_ok=True)
        # The usable model file beside the checkpoints, kept current.
        self.objective.save_model(self.inner, self.output / MODEL_FILE)
        self._emit("checkpoint", update=progress.update, path=str(path))

    def _finish(self, progress: Progress) -> dict:
        # The loop checkpointed its last update. A rerun of a finished run trains nothing and only writes the
        # model file again if it went missing: rank 0 alone, no collective (what each rank sees on disk differs
        # while rank 0 writes).
        if self.dist.is_main and not (self.output / MODEL_FILE).exists():
            self.objective.save_model(self.inner, self.output / MODEL_FILE)
        in_sync = self._ranks_in_sync()
        if self.tensorboard:
            self.tensorboard.close()
        summary = {"update": progress.update, "model": str(self.output / MODEL_FILE),
                   "skipped_files": progress.skipped_files, "skipped_updates": progress.skipped_updates,
                   "valid": progress.valid_results, "world_size": self.dist.world_size, "ranks_in_sync": in_sync}
        self._emit("end", **summary)
        return summary

    def _ranks_in_sync(self) -> bool:
        """After DDP training every process must hold the same weights; a cheap checksum comparison says so."""
        if not self.dist.enabled:
            return True
        with torch.no_grad():
            checksum = float(sum(p.double().sum() for p in self.inner.parameters()))
        sums = all_gather_objects(checksum, self.dist)
        return all(s == sums[0] for s in sums)


def check_output_dir(output: Path) -> None:
    """Fail before any work when the output folder cannot be used."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output {output}: exists and is not a folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output {output}: cannot create ({exc.strerror or exc})") from None


__all__ = [
    "METRICS_FILE",
    "MODEL_FILE",
    "DistInfo",
    "Objective",
    "StepResult",
    "Trainer",
    "check_output_dir",
    "find_checkpoints",
]
