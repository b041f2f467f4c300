"""Unit tests of the pretraining objective: span masks, distractors, the Gumbel quantizer, the loss terms."""

import dataclasses
import itertools
import json
import math

import pytest
import torch

from w2v2cli.config import preset
from w2v2cli.errors import ConfigError
from w2v2cli.model import build_model
from w2v2cli.model.masks import padding_mask, sample_negatives, span_mask
from w2v2cli.model.quantizer import GumbelQuantizer, Wav2Vec2ForPretraining, mean_pairwise_cosine
from w2v2cli.train.config import PRETRAIN_PRESETS, FinetuneConfig, PretrainConfig, TrainConfig, recipe_for_hours
from w2v2cli.train.schedule import learning_rate


def test_span_mask_never_covers_padding_and_masks_about_half():
    torch.manual_seed(0)
    lengths = torch.tensor([800, 500, 37, 11, 10, 1, 0] * 40)
    mask = span_mask(lengths, 800, prob=0.65, span=10)
    assert not (mask & padding_mask(lengths, 800)).any()
    assert not mask[lengths == 0].any()
    long_rows = mask[lengths == 800]
    # 0.65 x 10 with overlapping spans: 1 - exp(-0.65) ~ 48% (the paper's "about 49%").
    assert 0.45 < long_rows.float().mean() < 0.52
    # Spans are whole: every run of masked frames in a long row is at least 10 frames long.
    row = long_rows[0].int()
    edges = torch.diff(torch.cat([torch.tensor([0]), row, torch.tensor([0])]))
    starts, ends = (edges == 1).nonzero().flatten(), (edges == -1).nonzero().flatten()
    assert ((ends - starts) >= 10).all()


def test_span_mask_min_spans_and_device_of_lengths():
    lengths = torch.tensor([12, 30])
    mask = span_mask(lengths, 30, prob=0.0001, span=10, min_spans=1)
    assert mask.sum(1).tolist() == [10, 10]
    assert mask.device == lengths.device


def test_span_mask_is_deterministic_under_a_seed():
    lengths = torch.tensor([300, 200])
    torch.manual_seed(3)
    a = span_mask(lengths, 300, 0.65, 10)
    torch.manual_seed(3)
    assert torch.equal(a, span_mask(lengths, 300, 0.65, 10))


def test_negatives_come_from_the_same_utterance_and_never_the_positive():
    torch.manual_seed(0)
    counts = torch.tensor([5, 2, 9, 3])
    negatives = sample_negatives(counts, 100)  # (N, K)
    N = int(counts.sum())
    assert negatives.shape == (N, 100)
    utterance = torch.repeat_interleave(torch.arange(4), counts)
    assert (negatives != torch.arange(N).unsqueeze(1)).all()
    assert (utterance[negatives] == utterance.unsqueeze(1)).all()
    # Uniform over the other targets: in the 9-target utterance, each of its 8 others is drawn ~1/8 of the time.
    first = int(counts[:2].sum())
    drawn = negatives[first].bincount(minlength=N)[first:first + 9]
    assert drawn[0] == 0 and (drawn[1:] > 0).all()


def test_temperature_is_annealed_not_learned():
    cfg = PretrainConfig()
    assert cfg.temperature(0) == 2.0
    assert cfg.temperature(1) == pytest.approx(2.0 * 0.999995)
    assert cfg.temperature(10_000) == pytest.approx(2.0 * 0.999995**10_000)
    assert cfg.temperature(10_000_000) == 0.5  # floor
    model = Wav2Vec2ForPretraining(build_model(preset("tiny")), PRETRAIN_PRESETS["tiny"])
    names = [n for n, _ in model.named_parameters()]
    assert not any("temp" in n for n in names)
    model.set_update(100_000)
    assert model.head.quantizer.temperature == pytest.approx(2.0 * 0.999995**100_000)


def test_quantizer_is_straight_through_hard_selection():
    torch.manual_seed(0)
    q = GumbelQuantizer(16, groups=2, entries=8, codevector_dim=6).train()
    x = torch.randn(50, 16, requires_grad=True)
    out = q(x)
    books = q.codevectors.view(2, 8, 3)
    # Forward values are exactly one codeword per group (the sampled one), concatenated.
    expected = torch.cat([books[0][out.codes[:, 0]], books[1][out.codes[:, 1]]], dim=1)
    assert torch.equal(out.quantized, expected)
    out.quantized.sum().backward()
    assert q.weight_proj.weight.grad is not None and q.weight_proj.weight.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0


def test_diversity_loss_rewards_using_every_codeword():
    """L_d = (GV - perplexity) / GV: ~0 when the averaged softmax is uniform, ~1 when one entry wins; minimizing
    it spreads usage (the sign a popular reimplementation gets wrong)."""
    cfg = PRETRAIN_PRESETS["tiny"]
    entries = cfg.codebook_groups * cfg.codebook_entries
    torch.manual_seed(0)
    q = GumbelQuantizer(16, cfg.codebook_groups, cfg.codebook_entries, cfg.codevector_dim)
    with torch.no_grad():
        q.weight_proj.weight.zero_()
        q.weight_proj.bias.zero_()
    uniform = q(torch.randn(64, 16))
    assert float((entries - uniform.prob_perplexity) / entries) == pytest.approx(0.0, abs=1e-4)
    with torch.no_grad():
        q.weight_proj.bias.view(cfg.codebook_groups, -1)[:, 0] = 50.0  # entry 0 always wins
    collapsed = q(torch.randn(64, 16))
    assert float((entries - collapsed.prob_perplexity) / entries) > 0.99
    # Gradient descent on the diversity loss raises the perplexity.
    q.weight_proj.bias.data.normal_(0, 3)
    x = torch.randn(256, 16)
    before = float(q(x).prob_perplexity)
    opt = torch.optim.SGD(q.parameters(), lr=1.0)
    for _ in range(20):
        loss = (entries - q(x).prob_perplexity) / entries
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(q(x).prob_perplexity) > before


def _pretraining_model(**overrides):
    torch.manual_seed(0)
    return Wav2Vec2ForPretraining(build_model(preset("tiny")), PRETRAIN_PRESETS["tiny"].replace(**overrides))


def test_distractors_equal_to_the_positive_are_excluded():
    model = _pretraining_model().eval()
    with torch.no_grad():  # every frame gets code 0 in both groups: every distractor equals its positive
        model.head.quantizer.weight_proj.weight.zero_()
        model.head.quantizer.weight_proj.bias.zero_()
    torch.manual_seed(1)
    with torch.no_grad():
        terms = model(torch.randn(2, 32000), torch.tensor([32000, 24000]))
    assert terms.num_targets > 0
    # With only the positive left, -log p(positive) = 0 exactly.
    assert float(terms.contrastive) == 0.0


def test_pretraining_terms_on_a_padded_batch():
    model = _pretraining_model().train()
    torch.manual_seed(2)
    lengths = torch.tensor([48000, 20000, 8000])
    terms = model(torch.randn(3, 48000), lengths)
    assert math.isfinite(float(terms.contrastive)) and terms.num_targets > 0
    assert 0.3 < terms.masked_fraction < 0.7
    assert 0 <= float(terms.diversity) <= 1 and float(terms.feature_penalty) > 0
    (terms.contrastive / terms.num_targets + terms.diversity + terms.feature_penalty).backward()
    assert model.model.mask_embedding.grad is not None
    assert model.model.feature_encoder.layers[0].conv.weight.grad is not None


def test_feature_grad_mult_scales_the_encoder_gradient():
    grads = {}
    for mult in (1.0, 0.1):
        model = _pretraining_model(feature_grad_mult=mult, target_dropout=0.0, feature_penalty_weight=0.0).eval()
        torch.manual_seed(5)
        terms = model(torch.randn(1, 32000), torch.tensor([32000]))
        terms.contrastive.backward()
        grads[mult] = model.model.feature_encoder.layers[-1].conv.weight.grad.clone()
    # The quantizer's input (not scaled) also reaches the encoder, so compare through the context path only:
    # the scaled run's gradient differs and is smaller.
    assert grads[0.1].norm() < grads[1.0].norm()


def test_learning_rate_schedules():
    cfg = TrainConfig(max_updates=100, warmup=0.1, lr=1.0)
    lrs = [learning_rate(u, cfg) for u in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[50] == pytest.approx((100 - 51) / 90) and lrs[-1] == 0.0
    tri = cfg.replace(schedule="tri_stage", warmup=0.1, hold=0.4, final_lr_scale=0.05, init_lr_scale=0.01)
    lrs = [learning_rate(u, tri) for u in range(100)]
    assert lrs[0] == pytest.approx(0.01 + 0.99 * 0.1)
    assert lrs[20] == 1.0 and lrs[49] == 1.0
    assert lrs[-1] == pytest.approx(0.05)
    assert all(a >= b for a, b in itertools.pairwise(lrs[50:]))
    # A run that stops part-way through a longer schedule follows that schedule's first updates exactly.
    part = tri.replace(max_updates=60, schedule_updates=100)
    assert [learning_rate(u, part) for u in range(60)] == lrs[:60]
    longer = tri.replace(schedule_updates=200)
    assert learning_rate(99, longer) == 1.0 != lrs[99]
    with pytest.raises(ConfigError, match="schedule_updates"):
        TrainConfig(schedule_updates=0)


def test_bad_configs_are_one_line_errors():
    with pytest.raises(ConfigError, match="max_sample_size"):
        TrainConfig(max_tokens=1000, max_sample_size=2000)
    with pytest.raises(ConfigError, match="codevector_dim"):
        PretrainConfig(codevector_dim=255)


def test_training_configs_share_one_base():
    """Every training config refuses bad values the same way (each named with its value, all at once), round
    trips through its JSON, refuses unknown fields by name, and writes the JSON its runs' identities always had
    (so checkpoints written before resume under the same identity)."""
    bad = {TrainConfig: {"max_updates": 0, "lr": -1.0}, PretrainConfig: {"mask_length": 0, "logit_temp": 0.0},
           FinetuneConfig: {"mask_length": 0, "dropout": 1.5}}
    for cls, values in bad.items():
        with pytest.raises(ConfigError) as caught:
            cls(**values)
        message = str(caught.value)
        assert message.startswith(f"invalid {cls.kind}: ") and "\n" not in message
        for name, value in values.items():
            assert f"{name} must be" in message and f"not {value}" in message, message
    for config in (TrainConfig(betas=(0.8, 0.9), schedule_updates=7), PRETRAIN_PRESETS["tiny"],
                   FinetuneConfig(reinit_layers=2), recipe_for_hours(1)):
        assert type(config).from_dict(json.loads(config.to_json())) == config
    for config in (PRETRAIN_PRESETS["small"], FinetuneConfig()):
        assert config.to_json() == json.dumps(dataclasses.asdict(config), sort_keys=True)
    with pytest.raises(ConfigError, match=r"^invalid pretraining config: unknown fields extra, mask_len$"):
        PretrainConfig.from_dict({"mask_prob": 0.5, "mask_len": 3, "extra": 1})
    with pytest.raises(ConfigError, match=r"invalid training config: .*betas"):
        TrainConfig.from_dict({"betas": 0.9})


def test_mean_pairwise_cosine_measures_collapse():
    torch.manual_seed(3)
    same = torch.randn(1, 16).repeat(50, 1) * torch.rand(50, 1)  # one direction, different lengths
    assert abs(float(mean_pairwise_cosine(same)) - 1.0) < 1e-5
    assert abs(float(mean_pairwise_cosine(torch.eye(8)))) < 1e-6  # orthogonal rows
    opposite = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])
    assert abs(float(mean_pairwise_cosine(opposite)) + 1.0) < 1e-6
    rows = torch.randn(40, 8)  # against the O(N^2) definition
    u = torch.nn.functional.normalize(rows, dim=-1)
    pairs = (u @ u.T)[~torch.eye(40, dtype=torch.bool)]
    assert abs(float(mean_pairwise_cosine(rows)) - float(pairs.mean())) < 1e-5
    assert float(mean_pairwise_cosine(torch.randn(1, 8))) == 0.0


def test_collapsed_context_network_shows_in_context_cosine():
    model = _pretraining_model().eval()
    torch.manual_seed(4)
    waves, lengths = torch.randn(2, 32000), torch.tensor([32000, 24000])
    with torch.no_grad():
        terms = model(waves, lengths)
        assert float(terms.context_cosine) < 0.99
        assert -1.0 <= float(terms.target_cosine) <= 1.0
        # A context projection that ignores its input: every context vector is its bias.
        model.head.final_proj.weight.zero_()
        model.head.final_proj.bias.normal_()
        collapsed = model(waves, lengths)
    assert float(collapsed.context_cosine) > 0.9999
