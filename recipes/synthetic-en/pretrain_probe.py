"""Short pretraining runs that show whether the contrastive task is being learned or the context network is
collapsing, in w2v2 and, as a reference, in transformers' Wav2Vec2ForPreTraining on the same data.

Usage:
    python recipes/synthetic-en/pretrain_probe.py WORK/corpus/train.jsonl --config tiny --updates 150
    python recipes/synthetic-en/pretrain_probe.py WORK/corpus/train.jsonl --config tiny --set mask_length=3 \
        --set target_dropout=0 --update-freq 8
    python recipes/synthetic-en/pretrain_probe.py WORK/corpus/train.jsonl --config tiny --implementation transformers

One JSON line per logged update on stdout: contrastive loss against its chance level ln(1 + K), accuracy, the
mean cosine between the batch's context vectors (near 1: every masked frame gets the same vector, the collapse
that pretraining's chance plateau comes with), the same between the quantized targets, and the gradient norm.
`--set FIELD=VALUE` overrides a PretrainConfig field (mask_prob, mask_length, num_negatives, codebook_entries,
target_dropout, feature_grad_mult, logit_temp, ...). The w2v2 runs go through `w2v2cli.train.pretrain`, the same
code as `w2v2 pretrain`; the transformers run uses its own masking, negative sampling and loss (no feature
penalty, no gradient scaling into the CNN) with the same model sizes, crops, optimizer and LR schedule.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import tempfile

import torch

from w2v2cli.config import CONV_INITS, PRESETS, preset
from w2v2cli.data import read_source
from w2v2cli.errors import W2V2Error
from w2v2cli.io.audio import load_audio
from w2v2cli.io.hf import hf_config
from w2v2cli.model import build_model
from w2v2cli.model.quantizer import mean_pairwise_cosine
from w2v2cli.train.config import PRETRAIN_PRESETS, PretrainConfig, TrainConfig
from w2v2cli.train.pretrain import pretrain
from w2v2cli.train.schedule import learning_rate

FIELDS = ("update", "contrastive", "chance", "accuracy", "context_cosine", "target_cosine", "grad_norm", "lr")


def parse_overrides(pairs: list[str]) -> dict:
    known = {f.name for f in dataclasses.fields(PretrainConfig)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"pretrain_probe.py: --set {pair!r}: expected FIELD=VALUE")
        if key not in known:
            raise SystemExit(f"pretrain_probe.py: --set {pair!r}: no pretraining setting {key!r} "
                             f"(one of {', '.join(sorted(known))})")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            raise SystemExit(f"pretrain_probe.py: --set {pair!r}: the value must be a number or true/false") from None
    return out


def emit(record: dict) -> None:
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}), flush=True)


def run_w2v2(args, train_cfg: TrainConfig, pcfg: PretrainConfig, overrides: dict, chance: float) -> None:
    def on_event(event: dict) -> None:
        if event.get("event") == "log":
            emit({"implementation": "w2v2", "chance": chance,
                  **{k: event[k] for k in FIELDS if k in event}})

    with tempfile.TemporaryDirectory() as out:
        pretrain(args.train, out, config=args.config, train_config=train_cfg, pretrain_overrides=overrides,
                 on_event=on_event, conv_init=args.conv_init)


def run_transformers(args, train_cfg: TrainConfig, pcfg: PretrainConfig, overrides: dict, chance: float) -> None:
    """The same sizes, optimizer and LR schedule in transformers: batches of equal-length random crops (no padding,
    so its group-norm model needs no attention mask), its own span masks and distractors."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

    if set(overrides) - {"mask_prob", "mask_length", "num_negatives", "target_dropout"}:
        raise SystemExit("pretrain_probe.py: the transformers run takes --set mask_prob, mask_length, "
                         "num_negatives and target_dropout only")
    sizes = {k: v for k, v in hf_config(build_model(preset(args.config))).items()
             if k not in ("architectures", "model_type")}
    config = Wav2Vec2Config(
        **sizes,
        codevector_dim=pcfg.codevector_dim, proj_codevector_dim=pcfg.final_dim, num_negatives=pcfg.num_negatives,
        num_codevector_groups=pcfg.codebook_groups, num_codevectors_per_group=pcfg.codebook_entries,
        contrastive_logits_temperature=pcfg.logit_temp, diversity_loss_weight=pcfg.diversity_weight,
        feat_quantizer_dropout=pcfg.target_dropout, mask_time_prob=pcfg.mask_prob,
        mask_time_length=pcfg.mask_length,
    )
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model = Wav2Vec2ForPreTraining(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, betas=train_cfg.betas, eps=train_cfg.eps,
                                  weight_decay=train_cfg.weight_decay)
    crop = args.crop_samples
    pool = [u for u in read_source(args.train).utterances if u.num_samples >= crop]
    if not pool:
        raise SystemExit(f"pretrain_probe.py: {args.train}: no utterance of {crop} samples or more")
    per_batch = max(1, args.batch_samples // crop)
    frames = int(model._get_feat_extract_output_lengths(crop))
    for update in range(1, args.updates + 1):
        lr = learning_rate(update - 1, train_cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.set_gumbel_temperature(pcfg.temperature(update))
        optimizer.zero_grad()
        sums = {"contrastive": 0.0, "targets": 0, "context_cosine": 0.0, "target_cosine": 0.0}
        for _ in range(args.update_freq):
            waves = []
            for utterance in rng.sample(pool, per_batch):
                audio = load_audio(utterance.path)
                start = rng.randint(0, audio.shape[0] - crop)
                waves.append(audio[start:start + crop])
            batch = torch.stack(waves)  # (B, S)
            mask = _compute_mask_indices((per_batch, frames), pcfg.mask_prob, pcfg.mask_length, min_masks=2)
            negatives = _sample_negative_indices((per_batch, frames), pcfg.num_negatives, mask_time_indices=mask)
            mask = torch.tensor(mask, dtype=torch.bool)
            out = model(batch, mask_time_indices=mask,
                        sampled_negative_indices=torch.tensor(negatives, dtype=torch.long))
            (out.loss / (int(mask.sum()) * args.update_freq)).backward()
            sums["contrastive"] += float(out.contrastive_loss.detach())
            sums["targets"] += int(mask.sum())
            with torch.no_grad():
                sums["context_cosine"] += float(mean_pairwise_cosine(out.projected_states[mask])) / args.update_freq
                sums["target_cosine"] += float(
                    mean_pairwise_cosine(out.projected_quantized_states[mask])) / args.update_freq
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.clip_norm))
        optimizer.step()
        if update % args.log_every == 0 or update == args.updates:
            emit({"implementation": "transformers", "update": update, "chance": chance,
                  "contrastive": sums["contrastive"] / sums["targets"], "context_cosine": sums["context_cosine"],
                  "target_cosine": sums["target_cosine"], "grad_norm": grad_norm, "lr": lr})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", help="unlabeled audio: a manifest or a folder")
    parser.add_argument("--config", default="tiny", choices=tuple(PRESETS), help="model preset")
    parser.add_argument("--conv-init", choices=CONV_INITS, default=None,
                        help="how the conv stack starts (w2v2 only)")
    parser.add_argument("--implementation", choices=("w2v2", "transformers"), default="w2v2")
    parser.add_argument("--updates", type=int, default=150)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of --updates")
    parser.add_argument("--update-freq", type=int, default=1, help="batches accumulated per update")
    parser.add_argument("--batch-samples", type=int, default=480_000, help="samples per batch (30 s)")
    parser.add_argument("--crop-samples", type=int, default=48_000,
                        help="w2v2: longest crop; transformers: every crop (3 s)")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.overrides)
    try:
        # The settings `w2v2 pretrain --config` would use, so that both implementations run the same ones.
        pcfg = PRETRAIN_PRESETS.get(args.config, PretrainConfig()).replace(**overrides)
        train_cfg = TrainConfig(
            max_updates=args.updates, max_tokens=args.batch_samples, max_sample_size=args.crop_samples,
            min_sample_size=args.crop_samples // 3, update_freq=args.update_freq, lr=args.lr, warmup=args.warmup,
            log_every=args.log_every, save_every=10**9, valid_every=10**9, num_workers=1, device="cpu",
            seed=args.seed,
        )
        run = run_transformers if args.implementation == "transformers" else run_w2v2
        run(args, train_cfg, pcfg, overrides, math.log(1 + pcfg.num_negatives))
    except W2V2Error as exc:
        raise SystemExit(f"pretrain_probe.py: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
