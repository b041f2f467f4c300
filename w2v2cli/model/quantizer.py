"""Gumbel-softmax product quantizer and the wav2vec 2.0 pretraining objective (paper section 3).

The quantizer turns the (layer-normed) CNN features of the masked frames into discrete targets; the context
network's outputs at those frames must pick their target out of K distractors (contrastive loss, eq. 3), and a
diversity loss (eq. 4) keeps all codebook entries in use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PretrainConfig
from .masks import padding_mask, sample_negatives, span_mask


class GradMultiply(torch.autograd.Function):
    """Identity forward; scales the gradient (fairseq feature_grad_mult: the CNN learns 10x slower)."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def mean_pairwise_cosine(x: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity over pairs of distinct rows of x (N, D), in O(N D): near 1 when every row points
    the same way. For the context vectors that is a collapsed context network, the usual form of pretraining's
    chance plateau: the contrastive loss sits at ln(1 + K) because every candidate looks alike to every frame."""
    n = x.shape[0]
    if n < 2:
        return x.new_zeros((), dtype=torch.float32)
    total = F.normalize(x.float(), dim=-1).sum(0)  # sum_ij u_i . u_j = |sum_i u_i|^2, the diagonal adds n
    return (total.dot(total) - n) / (n * (n - 1))


def entropy_perplexity(probs: torch.Tensor) -> torch.Tensor:
    """Sum over groups of exp(entropy) of (G, V) distributions: G x V when every entry is used equally."""
    return torch.exp(-(probs * torch.log(probs + 1e-7)).sum(-1)).sum()


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # (N, codevector_dim)
    codes: torch.Tensor  # (N, G) chosen entry per group (the hard choice)
    code_perplexity: torch.Tensor  # () perplexity of the hard choices: how many entries are in use
    prob_perplexity: torch.Tensor  # () perplexity of the batch-averaged softmax: what the diversity loss raises


class GumbelQuantizer(nn.Module):
    """G codebooks of V entries; one entry per group is chosen with a straight-through Gumbel softmax and the
    chosen entries are concatenated (fairseq GumbelVectorQuantizer with combine_groups=False).

    The temperature is an attribute set from the update count (annealed, never learned).
    """

    def __init__(self, in_dim: int, groups: int, entries: int, codevector_dim: int):
        super().__init__()
        self.groups, self.entries = groups, entries
        self.weight_proj = nn.Linear(in_dim, groups * entries)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)
        self.codevectors = nn.Parameter(torch.rand(1, groups * entries, codevector_dim // groups))
        self.temperature = 2.0

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        # x: (N, C) features of the frames to quantize -> (N, G * d)
        N = x.shape[0]
        logits = self.weight_proj(x).float().view(N, self.groups, self.entries)  # (N, G, V)
        hard = F.one_hot(logits.argmax(-1), self.entries).float()  # (N, G, V)
        if N:
            code_perplexity = entropy_perplexity(hard.mean(0))
            prob_perplexity = entropy_perplexity(torch.softmax(logits, -1).mean(0))
        else:  # nothing to quantize in this batch: no evidence about codebook use
            code_perplexity = prob_perplexity = logits.sum() * 0.0
        if self.training:
            # Straight-through: the forward value is the hard one-hot of a Gumbel sample, the gradient is the
            # soft sample's. The sampled entry, not the logits' argmax, is the one the target uses.
            choice = F.gumbel_softmax(logits, tau=self.temperature, hard=True)
        else:
            choice = hard
        codes = choice.argmax(-1)  # (N, G)
        codebooks = self.codevectors.view(self.groups, self.entries, -1)  # (G, V, d)
        quantized = torch.einsum("ngv,gvd->ngd", choice.to(codebooks.dtype), codebooks)  # (N, G, d)
        return QuantizerOutput(quantized.flatten(1), codes, code_perplexity, prob_perplexity)


@dataclass
class PretrainTerms:
    """Sums over one batch; the objective divides by the number of targets of a whole update."""

    contrastive: torch.Tensor  # () sum of -log p(positive) over targets
    diversity: torch.Tensor  # () (GV - perplexity) / GV, a batch quantity
    feature_penalty: torch.Tensor  # () mean squared CNN feature over valid frames
    num_targets: int  # masked frames that had distractors
    # Figures for logging, as 0-d tensors so that reading them does not stall the device.
    correct: torch.Tensor  # targets whose positive scored highest
    code_perplexity: torch.Tensor
    prob_perplexity: torch.Tensor
    masked_fraction: torch.Tensor  # masked valid frames / valid frames
    context_cosine: torch.Tensor  # mean cosine between the batch's context vectors (1: collapsed)
    target_cosine: torch.Tensor  # the same between its quantized targets


class PretrainingHead(nn.Module):
    """Quantizer and the two projections into the comparison space (fairseq project_q and final_proj)."""

    def __init__(self, feature_channels: int, dim: int, cfg: PretrainConfig):
        super().__init__()
        self.quantizer = GumbelQuantizer(feature_channels, cfg.codebook_groups, cfg.codebook_entries,
                                         cfg.codevector_dim)
        self.project_q = nn.Linear(cfg.codevector_dim, cfg.final_dim)
        self.final_proj = nn.Linear(dim, cfg.final_dim)


class Wav2Vec2ForPretraining(nn.Module):
    """The model core plus the pretraining head; forward computes the loss terms of one batch."""

    def __init__(self, model, cfg: PretrainConfig, head: PretrainingHead | None = None):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.head = head or PretrainingHead(model.feature_encoder.out_channels, model.config.dim, cfg)
        self.target_dropout = nn.Dropout(cfg.target_dropout)

    def set_update(self, update: int) -> None:
        self.head.quantizer.temperature = self.cfg.temperature(update)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> PretrainTerms:
        cfg, model = self.cfg, self.model
        features, frame_lengths = model.extract_features(waveforms, lengths)  # (B, T, C)
        _B, T, _ = features.shape
        valid = ~padding_mask(frame_lengths, T)  # (B, T)
        num_valid = valid.sum().clamp(min=1)
        if cfg.feature_grad_mult != 1.0:
            features = GradMultiply.apply(features, cfg.feature_grad_mult)
        # After the gradient scaling, as in fairseq: the penalty's pull on the CNN is scaled by 0.1 too. Before
        # it, the penalty (weight 10) shrinks the CNN's output towards zero faster than the contrastive task can
        # use it, and tiny models sit at the chance plateau with all context vectors alike.
        feature_penalty = (features.float().pow(2).mean(-1) * valid).sum() / num_valid
        projected, normalized = model.feature_projection(features)  # (B, T, D), (B, T, C)

        mask = span_mask(frame_lengths, T, cfg.mask_prob, cfg.mask_length, min_spans=1)  # (B, T)
        counts = mask.sum(1)  # (B,)
        masked_fraction = (counts.sum() / num_valid).detach()
        x = torch.where(mask.unsqueeze(-1), model.mask_embedding.to(projected.dtype), projected)
        hidden = model.encode(x, frame_lengths)  # (B, T, D)

        # Targets: masked frames of utterances that have at least one other masked frame to draw from.
        targets = mask & (counts >= 2).unsqueeze(1)  # (B, T)
        counts = targets.sum(1)
        context = self.head.final_proj(hidden[targets])  # (N, F), row-major: utterance by utterance
        q = self.head.quantizer(self.target_dropout(normalized[targets]))
        positives = self.head.project_q(q.quantized)  # (N, F)
        negatives = sample_negatives(counts, cfg.num_negatives)  # (N, K)
        candidates = torch.cat([positives.unsqueeze(1), positives[negatives]], 1)  # (N, 1 + K, F)
        logits = F.cosine_similarity(context.float().unsqueeze(1), candidates.float(), dim=-1) / cfg.logit_temp
        # A distractor quantized to the same vector as the positive is not a distractor (same codes).
        same = (q.codes[negatives] == q.codes.unsqueeze(1)).all(-1)  # (N, K)
        logits[:, 1:] = logits[:, 1:].masked_fill(same, float("-inf"))
        zeros = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
        contrastive = F.cross_entropy(logits, zeros, reduction="sum")
        with torch.no_grad():
            best = logits.argmax(-1)
            # Logits all equal (a collapsed model) count as wrong rather than as a lucky argmax of 0.
            correct = ((best == 0) & (logits.max(-1).values > logits.min(-1).values)).sum()
            context_cosine, target_cosine = mean_pairwise_cosine(context), mean_pairwise_cosine(positives)
        entries = cfg.codebook_groups * cfg.codebook_entries
        diversity = (entries - q.prob_perplexity) / entries if len(logits) else q.prob_perplexity
        return PretrainTerms(
            contrastive=contrastive,
            diversity=diversity,
            feature_penalty=feature_penalty,
            num_targets=len(logits),
            correct=correct,
            code_perplexity=q.code_perplexity.detach(),
            prob_perplexity=q.prob_perplexity.detach(),
            masked_fraction=masked_fraction,
            context_cosine=context_cosine,
            target_cosine=target_cosine,
        )
