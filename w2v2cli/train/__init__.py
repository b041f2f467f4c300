"""Training: one loop (trainer.py) with two objectives (pretraining, fine-tuning)."""

from .pretrain import pretrain
from .trainer import METRICS_FILE, MODEL_FILE, Trainer, find_checkpoints

__all__ = ["METRICS_FILE", "MODEL_FILE", "Trainer", "find_checkpoints", "pretrain"]
