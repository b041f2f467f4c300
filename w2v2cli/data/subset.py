"""Reproducible subsets of labeled data by duration (`finetune --hours N`)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..errors import ConfigError
from ..io.atomic import atomic_open
from .utterance import Utterance

SUBSET_FILE = "train_subset.jsonl"  # where `finetune --hours` and `pretrain --hours` list the chosen utterances


def select_hours(utterances: list[Utterance], hours: float, seed: int,
                 sample_rate: int = ModelConfig.sample_rate) -> list[Utterance]:
    """A seeded subset totalling `hours` (within 1% or one utterance), spread evenly over speakers.

    Speakers (None counts as one speaker) are visited round robin in a seeded order, each contributing its
    next utterance in a seeded order; an utterance that would overshoot the target by more than 1% is passed
    over, so the total lands inside [target - 1%, target + 1%] whenever the durations allow it. The same data
    and seed always give the same list, in a stable order. `num_samples` are counted at `sample_rate`.
    """
    target = hours * 3600 * sample_rate
    total = sum(u.num_samples for u in utterances)
    if target > total * 1.01:
        raise ConfigError(
            f"hours {hours:g}: the training data holds only {total / sample_rate / 3600:.3f} h"
        )
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in sorted(utterances, key=lambda u: u.id):
        by_speaker[u.speaker or ""].append(u)
    queues = []
    for speaker in sorted(by_speaker):
        items = by_speaker[speaker]
        queues.append([items[i] for i in rng.permutation(len(items))])
    queues = [queues[i] for i in rng.permutation(len(queues))]
    chosen, acc, upper = [], 0, target * 1.01
    positions = [0] * len(queues)
    while acc < target * 0.99 and any(p < len(q) for p, q in zip(positions, queues)):
        for k, queue in enumerate(queues):
            while positions[k] < len(queue):
                u = queue[positions[k]]
                positions[k] += 1
                if acc + u.num_samples <= upper:
                    chosen.append(u)
                    acc += u.num_samples
                    break
            if acc >= target * 0.99:
                break
    if not chosen:  # every utterance is longer than the target: one utterance is the closest we can get
        chosen = [min(utterances, key=lambda u: abs(u.num_samples - target))]
    return chosen


def write_manifest(utterances: list[Utterance], path: Path, sample_rate: int = ModelConfig.sample_rate) -> None:
    """JSONL that `read_source` reads back: the subset can be shared and reproduced. A segment keeps its
    "offset"; audio that is not a file of its own (a dataset's bytes, a wav.scp command) is listed by the file
    that holds it and its "from" label, which only that source can read."""
    with atomic_open(path) as f:
        for u in utterances:
            record = {"id": u.id, "audio": str(Path(u.path).resolve()), "text": u.text,
                      "duration": u.num_samples / sample_rate}
            if u.start_s or u.duration_s is not None:
                record.update(offset=u.start_s, duration=u.duration_s)
            if u.data is not None:
                record["from"] = u.label or str(u.path)
            if u.speaker is not None:
                record["speaker"] = u.speaker
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
