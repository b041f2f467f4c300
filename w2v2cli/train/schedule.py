"""Learning-rate schedules as pure functions of the update count, so a resumed run needs no scheduler state."""

from __future__ import annotations

import math

from .config import TrainConfig


def learning_rate(update: int, cfg: TrainConfig) -> float:
    """LR for the update that follows `update` finished updates (0-based)."""
    total = cfg.schedule_updates or cfg.max_updates
    warm = round(cfg.warmup * total)
    step = update + 1  # the first update already gets a non-zero LR
    if cfg.schedule == "linear":
        # fairseq polynomial_decay with power 1 and end LR 0: linear warm-up, then linear decay.
        if step <= warm:
            return cfg.lr * step / warm
        return cfg.lr * max(0.0, (total - step) / max(1, total - warm))
    # tri_stage (fairseq): linear warm-up from init_lr_scale, hold at the peak, exponential decay to final_lr_scale.
    hold = round(cfg.hold * total)
    decay = max(1, total - warm - hold)
    if step <= warm:
        start = cfg.lr * cfg.init_lr_scale
        return start + (cfg.lr - start) * step / max(1, warm)
    if step <= warm + hold:
        return cfg.lr
    progress = min(1.0, (step - warm - hold) / decay)
    return cfg.lr * math.exp(math.log(cfg.final_lr_scale) * progress)
