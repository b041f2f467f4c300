"""Building blocks of wav2vec 2.0. Every block takes and returns lengths, so padding never leaks into results.

Names of the matching fairseq options are given where they differ from ours.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from ..config import conv_geometry
from .masks import conv_output_lengths, frame_lengths, num_frames, padding_mask


def activation_fn(name: str):
    if name == "gelu_new":
        return lambda x: F.gelu(x, approximate="tanh")
    return {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}[name]


def static_graph() -> bool:
    """True while the model is being traced or exported: no branches on tensor values, no in-place shortcuts,
    so the recorded graph holds for every batch (the general masked paths compute the same results)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def _can_overwrite(x: torch.Tensor) -> bool:
    """In-place updates are safe when no autograd graph records x (inference)."""
    return not (torch.is_grad_enabled() and x.requires_grad) and not static_graph()


class MaskedGroupNorm(nn.Module):
    """GroupNorm with one group per channel whose statistics cover valid frames only.

    For an unpadded input this is exactly nn.GroupNorm(C, C); for a padded batch each utterance gets the
    statistics it would get alone, which is what makes group-norm (BASE) models batch-invariant.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, stats=None) -> torch.Tensor:
        """x: (B, C, T). `stats` = (mean, var), each (B, C, 1), precomputed over whole utterances when x holds
        windows of longer audio; otherwise statistics come from x's valid frames, in fp32 whatever the dtype."""
        xf = x.float()
        if stats is not None:
            mean, var = (t.float() for t in stats)
        elif not static_graph() and bool((lengths == x.shape[-1]).all()):  # unpadded: the fused kernel agrees
            return F.group_norm(x, x.shape[1], self.weight, self.bias, self.eps)
        elif _can_overwrite(x):  # inference on a padded batch: each row's own frames through the fused kernel,
            # in place, so a row is normalized exactly as it would be alone
            for b, n in enumerate(lengths.tolist()):
                if n > 0:
                    # the aten op: F.group_norm refuses a single frame, whose normalized value is just the bias
                    x[b, :, :n] = torch.group_norm(x[b:b + 1, :, :n], x.shape[1], self.weight, self.bias,
                                                   self.eps, False)[0]
            return x
        else:
            valid = (~padding_mask(lengths, x.shape[-1])).to(xf.dtype).unsqueeze(-1)  # (B, T, 1)
            count = lengths.clamp(min=1).to(xf.dtype).view(-1, 1, 1)  # (B, 1, 1)
            mean = torch.bmm(xf, valid) / count  # (B, C, 1)
            var = torch.bmm((xf - mean).square(), valid) / count  # (B, C, 1), two-pass for accuracy
        scale = self.weight.float().view(1, -1, 1) * torch.rsqrt(var + self.eps)
        shift = self.bias.float().view(1, -1, 1) - mean * scale
        if _can_overwrite(xf) and xf is x:  # inference: normalize in place, the layer's largest tensor
            return xf.mul_(scale).add_(shift)
        return torch.addcmul(shift, xf, scale).to(x.dtype)


class ConvLayer(nn.Module):
    """Conv1d -> (norm) -> GELU, with its output lengths."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, bias: bool, norm: str | None):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        self.norm_kind = norm
        if norm == "group":
            self.norm = MaskedGroupNorm(out_channels)
        elif norm == "layer":
            self.norm = nn.LayerNorm(out_channels)
        else:
            self.norm = None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, norm_stats=None) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, C_in, S) -> (B, C_out, T)
        lengths = conv_output_lengths(lengths, self.kernel, self.stride)
        if x.shape[-1] < self.kernel:  # every utterance in the batch is shorter than the kernel: no frames
            return x.new_zeros(x.shape[0], self.conv.out_channels, 0), lengths
        if self.conv.in_channels == 1 and x.device.type == "cpu" and not static_graph():
            x = self._single_channel(x)
        else:
            x = self.conv(x)
        if self.norm_kind == "group":
            x = self.norm(x, lengths, norm_stats)
        elif self.norm_kind == "layer":
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        # The first layers' outputs are the largest tensors of the model (512 x S/5): no second copy at inference.
        return (torch.ops.aten.gelu_(x) if _can_overwrite(x) else F.gelu(x)), lengths

    def _single_channel(self, x: torch.Tensor) -> torch.Tensor:
        """The conv on a one-channel input (the waveform) as a batched matrix product over its windows.

        The same sums as the conv (the embedded model's emissions on 572 test files came out bit-identical),
        but oneDNN runs this layer (1 input channel, kernel 10) on the CPU about 10x slower than the product for
        most input lengths: 9-11 ms against about 1 ms for 8 rows of 1 s on a 2-core EPYC, torch 2.11. Inside
        the model the layer's output is bound by memory either way, so inference gains a few percent; a
        training step, whose backward is slow as a conv too, about 1.1x (docs/benchmarks.md, The waveform layer
        as a matrix product)."""
        conv = self.conv
        windows = x[:, 0].unfold(1, self.kernel, self.stride).transpose(1, 2)  # (B, kernel, T), a view
        weight = conv.weight.view(1, conv.out_channels, self.kernel).expand(x.shape[0], -1, -1)
        if conv.bias is None:
            return torch.bmm(weight, windows)
        bias = conv.bias.view(1, -1, 1).expand(x.shape[0], -1, windows.shape[-1])
        return torch.baddbmm(bias, weight, windows)


class FeatureEncoder(nn.Module):
    """The convolutional feature encoder on the raw waveform (fairseq ConvFeatureExtractionModel)."""

    def __init__(self, conv_layers, feature_norm: str, bias: bool):
        super().__init__()
        layers, in_channels = [], 1
        for i, (channels, kernel, stride) in enumerate(conv_layers):
            norm = "layer" if feature_norm == "layer" else ("group" if i == 0 else None)
            layers.append(ConvLayer(in_channels, channels, kernel, stride, bias, norm))
            in_channels = channels
        self.layers = nn.ModuleList(layers)
        self.conv_layers = tuple(conv_layers)
        self.out_channels = in_channels
        self.receptive_field, self.hop = conv_geometry(conv_layers)

    # At inference the stack runs in blocks of at most `block_frames` per row (10 s), so its largest tensors
    # (the first layers', C x S/5 and C x S/10) stay small however long the input is. On the CPU a block also
    # stays in cache: it holds `block_budget` frames across the batch's rows (8 s of audio), at least
    # `min_block_frames` per row; on a 2-core EPYC this made the model 1.2-1.4x faster on 30 s batches of 1-10 s
    # utterances. (A GPU gains nothing from small blocks, only more kernel launches.) The first layer's
    # GroupNorm statistics come from `first_layer_stats`, which does not run the layer.
    block_frames = 500
    block_budget = 400
    min_block_frames = 25

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, group_stats=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # waveforms: (B, S) -> features (B, T, C); group_stats (mean, var) feed the first layer's GroupNorm
        hop, field = self.hop, self.receptive_field
        block = self.block_frames
        if waveforms.device.type == "cpu":
            block = min(block, max(self.min_block_frames, self.block_budget // max(1, waveforms.shape[0])))
        whole = static_graph() or self.training  # a traced graph must not depend on the batch's width
        total_frames = 0 if whole else num_frames(waveforms.shape[1], self.conv_layers)
        if whole or total_frames <= block:
            x = waveforms.unsqueeze(1)  # (B, 1, S)
            for i, layer in enumerate(self.layers):
                x, lengths = layer(x, lengths, group_stats if i == 0 else None)
            return x.transpose(1, 2), lengths
        if self.layers[0].norm_kind == "group" and group_stats is None:
            group_stats = self.first_layer_stats(waveforms, lengths)
        blocks = []
        for f0 in range(0, total_frames, block):
            f1 = min(f0 + block, total_frames)
            x = waveforms[:, f0 * hop:(f1 - 1) * hop + field].unsqueeze(1)  # (B, 1, block samples)
            for i, layer in enumerate(self.layers):
                # Statistics are given, so the block lengths only need to be valid sizes here.
                x, _ = layer(x, torch.full_like(lengths, x.shape[-1]), group_stats if i == 0 else None)
            blocks.append(x.transpose(1, 2))
        return torch.cat(blocks, dim=1), frame_lengths(lengths, self.conv_layers)

    def first_layer_stats(self, waveforms: torch.Tensor, lengths: torch.Tensor, wave_stats=None, eps: float = 1e-7):
        """Per-utterance (mean, var), each (B, C, 1), of the first conv layer's output over valid frames.

        The layer is linear in its input windows (`kernel` samples every `stride`), so every channel's mean and
        variance follow from the windows' mean vector m and covariance matrix S (kernel x kernel): w.m (+ bias)
        and w'Sw for the channel's weights w. m and S are accumulated block by block in float64 (Chan et al.'s
        pairwise merge), which costs a small fraction of running the layer. `wave_stats` (mean, var) normalize
        the waveform blocks first."""
        first = self.layers[0]
        conv = first.conv
        device = conv.weight.device
        kernel, stride = first.kernel, first.stride
        first_lengths = conv_output_lengths(lengths, kernel, stride).to(device)
        first_frames = num_frames(waveforms.shape[1], self.conv_layers[:1])
        step = self.block_frames * self.hop // stride
        batch = waveforms.shape[0]
        count = torch.zeros(batch, 1, dtype=torch.float64, device=device)
        mean = torch.zeros(batch, kernel, dtype=torch.float64, device=device)
        m2 = torch.zeros(batch, kernel, kernel, dtype=torch.float64, device=device)
        for f0 in range(0, first_frames, step):
            f1 = min(f0 + step, first_frames)
            piece = waveforms[:, f0 * stride:(f1 - 1) * stride + kernel].to(device, torch.float64)
            if wave_stats is not None:
                wave_mean, wave_var = (t.to(device, torch.float64) for t in wave_stats)
                piece = (piece - wave_mean) * torch.rsqrt(wave_var + eps)
            windows = piece.unfold(1, kernel, stride)  # (B, f1 - f0, kernel)
            n = (first_lengths - f0).clamp(0, f1 - f0).unsqueeze(1).double()  # (B, 1) valid frames of this block
            valid = (torch.arange(f1 - f0, device=device) < n).unsqueeze(-1)  # (B, f1 - f0, 1)
            block_mean = (windows * valid).sum(1) / n.clamp(min=1)  # (B, kernel)
            centered = (windows - block_mean.unsqueeze(1)) * valid
            block_m2 = centered.transpose(1, 2) @ centered  # (B, kernel, kernel)
            total = count + n
            weight = torch.where(total > 0, n / total.clamp(min=1), 0.0)
            delta = block_mean - mean
            mean = mean + delta * weight
            m2 = m2 + block_m2 + delta.unsqueeze(2) * delta.unsqueeze(1) * (count * weight).unsqueeze(2)
            count = total
        cov = m2 / count.clamp(min=1).unsqueeze(2)
        weights = conv.weight.detach().reshape(conv.out_channels, kernel).double()  # one input channel
        channel_mean = mean @ weights.T  # (B, C)
        if conv.bias is not None:
            channel_mean = channel_mean + conv.bias.detach().double()
        channel_var = torch.einsum("ck,bkl,cl->bc", weights, cov, weights).clamp(min=0)
        return channel_mean.float().unsqueeze(-1), channel_var.float().unsqueeze(-1)


class FeatureProjection(nn.Module):
    """LayerNorm over the conv channels (unless `norm` is False, as in some HuBERT checkpoints), then Linear to the
    model width. Returns (projected, normalized)."""

    def __init__(self, in_channels: int, dim: int, eps: float, dropout: float, norm: bool = True):
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_channels, eps=eps) if norm else None
        self.projection = nn.Linear(in_channels, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normalized = self.layer_norm(features) if self.layer_norm is not None else features
        return self.dropout(self.projection(normalized)), normalized


class PositionalConv(nn.Module):
    """Grouped convolutional relative positional embedding with weight normalization over the kernel axis.

    Weight norm is written out (g, v) rather than with a parametrization so that state dicts, exports and
    conversions see two plain tensors.
    """

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.kernel, self.groups = kernel, groups
        std = math.sqrt(4.0 / (kernel * dim))  # fairseq's init
        self.weight_v = nn.Parameter(torch.randn(dim, dim // groups, kernel) * std)
        self.weight_g = nn.Parameter(self.weight_v.detach().norm(dim=(0, 1), keepdim=True).clone())
        self.bias = nn.Parameter(torch.zeros(dim))

    def weight(self) -> torch.Tensor:
        return self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, T, D) with padded frames already zeroed; one conv needs no `pad` (StackedPositionalConv does)
        y = F.conv1d(x.transpose(1, 2), self.weight(), self.bias, padding=self.kernel // 2, groups=self.groups)
        if self.kernel % 2 == 0:  # an even kernel yields one extra frame
            y = y[:, :, :-1]
        return F.gelu(y).transpose(1, 2)


class StackedPositionalConv(nn.Module):
    """data2vec-audio's positional embedding: `depth` grouped convs, each followed by a LayerNorm without weights
    and GELU (transformers' Data2VecAudioPositionalConvEmbedding).

    Padded frames are zeroed again between the convs, so each layer sees what it would see for the utterance
    alone (transformers does not, which makes its outputs depend on the padding a batch gives an utterance).
    """

    def __init__(self, dim: int, kernel: int, groups: int, depth: int):
        super().__init__()
        self.kernel, self.dim = kernel, dim
        self.layers = nn.ModuleList(
            nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D) with padded frames zeroed; pad (B, T), True = padding
        keep = ~pad.unsqueeze(1)  # (B, 1, T)
        y = x.transpose(1, 2)  # (B, D, T)
        for i, conv in enumerate(self.layers):
            if i:
                y = y * keep
            y = conv(y)
            if self.kernel % 2 == 0:
                y = y[:, :, :-1]
            y = F.gelu(F.layer_norm(y.transpose(1, 2), (self.dim,)).transpose(1, 2))
        return y.transpose(1, 2)


def relative_position_buckets(length: int, num_buckets: int, max_distance: int, device=None) -> torch.Tensor:
    """WavLM's bucket of every (query, key) offset, (T, T) int64: exact below num_buckets / 4 frames, log-spaced
    up to `max_distance`, the last bucket beyond; keys after the query use the upper half of the buckets."""
    positions = torch.arange(length, device=device)
    relative = positions[None, :] - positions[:, None]  # key - query
    half = num_buckets // 2
    buckets = (relative > 0).long() * half
    distance = relative.abs()
    max_exact = half // 2
    # clamp(min=1): the log branch is only taken at distance >= max_exact; it must not see log(0) in a graph.
    far = max_exact + (torch.log(distance.clamp(min=1).float() / max_exact)
                       / math.log(max_distance / max_exact) * (half - max_exact)).long()
    far = far.clamp(max=half - 1)
    return buckets + torch.where(distance < max_exact, distance, far)


class RelativePositionBias(nn.Module):
    """WavLM's relative position bias, (H, T, T): one learned value per head and bucket (transformers keeps the
    table in layer 0's attention as rel_attn_embed; every layer gates the same bias)."""

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int):
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, length: int) -> torch.Tensor:
        buckets = relative_position_buckets(length, self.num_buckets, self.max_distance, self.embedding.weight.device)
        return self.embedding(buckets).permute(2, 0, 1)  # (T, T, H) -> (H, T, T)


class Adapter(nn.Module):
    """MMS attention adapter (transformers' Wav2Vec2AttnAdapterLayer): LayerNorm, down-projection, ReLU,
    up-projection; its output is added to the layer's. A language is this module in every layer plus the CTC
    head (adapter.LANG.safetensors)."""

    def __init__(self, dim: int, adapter_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)  # default eps, not the model's: as transformers builds it
        self.down = nn.Linear(dim, adapter_dim)
        self.up = nn.Linear(adapter_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(F.relu(self.down(self.norm(x))))


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection and scaled_dot_product_attention.

    With `gated_bias` (WavLM) the scores also get the relative position bias, scaled per head and query frame by
    a gate computed from the query frame's input (transformers' gru_rel_pos_linear / gru_rel_pos_const).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float, gated_bias: bool = False):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        if gated_bias:
            self.gate = nn.Linear(dim // num_heads, 8)
            self.gate_const = nn.Parameter(torch.ones(1, num_heads, 1, 1))
        else:
            self.gate = None

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, position_bias=None) -> torch.Tensor:
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.num_heads, D // self.num_heads)  # (B, T, 3, H, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, hd)
        if self.gate is not None and position_bias is not None:
            attn_mask = self._gated_bias(x, position_bias, attn_mask)
        dropout_p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))  # (B, T, D)

    def _gated_bias(self, x: torch.Tensor, bias: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """The float mask (B, H, T, T): gate * bias, and -inf at keys the bool `attn_mask` forbids."""
        B, T, D = x.shape
        heads = x.view(B, T, self.num_heads, D // self.num_heads).transpose(1, 2)  # (B, H, T, hd)
        gates = torch.sigmoid(self.gate(heads).view(B, self.num_heads, T, 2, 4).sum(-1))  # (B, H, T, 2)
        gate_a, gate_b = gates.unbind(-1)
        gate = (gate_a * (gate_b * self.gate_const[..., 0] - 1.0) + 2.0).unsqueeze(-1)  # (B, H, T, 1)
        scores = gate * bias.to(x.dtype)  # (B, H, T, T)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        return scores


class FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, activation: str, activation_dropout: float, dropout: float):
        super().__init__()
        self.intermediate = nn.Linear(dim, ffn_dim)
        self.output = nn.Linear(ffn_dim, dim)
        self.act = activation_fn(activation)
        self.activation_dropout = nn.Dropout(activation_dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.output(self.activation_dropout(self.act(self.intermediate(x)))))


class EncoderLayer(nn.Module):
    """One Transformer layer, post-LN (BASE) or pre-LN (`layer_norm_first`, LARGE-LV60)."""

    def __init__(self, cfg):
        super().__init__()
        self.layer_norm_first = cfg.layer_norm_first
        self.attention = SelfAttention(cfg.dim, cfg.num_heads, cfg.attention_dropout,
                                       gated_bias=cfg.relative_position_buckets > 0)
        self.attention_norm = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.feed_forward = FeedForward(cfg.dim, cfg.ffn_dim, cfg.activation, cfg.activation_dropout, cfg.dropout)
        self.final_norm = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.adapter = Adapter(cfg.dim, cfg.adapter_dim) if cfg.adapter_dim else None

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, position_bias=None) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.dropout(self.attention(self.attention_norm(x), attn_mask, position_bias))
            x = x + self.feed_forward(self.final_norm(x))
            return x if self.adapter is None else x + self.adapter(x)
        x = self.attention_norm(x + self.dropout(self.attention(x, attn_mask, position_bias)))
        return self.final_norm(x + self.feed_forward(x))


class Transformer(nn.Module):
    """Positional conv + Transformer layers. Padded frames are zeroed before the positional conv and are never
    attended to, so valid frames do not depend on padding."""

    def __init__(self, cfg):
        super().__init__()
        self.layer_norm_first = cfg.layer_norm_first
        self.layerdrop = cfg.layerdrop
        if cfg.pos_conv_depth:
            self.pos_conv = StackedPositionalConv(cfg.dim, cfg.pos_conv_kernel, cfg.pos_conv_groups, cfg.pos_conv_depth)
        else:
            self.pos_conv = PositionalConv(cfg.dim, cfg.pos_conv_kernel, cfg.pos_conv_groups)
        self.relative_position = (
            RelativePositionBias(cfg.relative_position_buckets, cfg.relative_position_max_distance, cfg.num_heads)
            if cfg.relative_position_buckets else None
        )
        self.layer_norm = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))
        # Training may recompute each layer's activations in backward instead of storing them (less memory).
        self.activation_checkpointing = False

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D) -> (B, T, D); padded frames of the output are zero
        pad = padding_mask(lengths, x.shape[1])  # (B, T)
        x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        x = x + self.pos_conv(x, pad)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        attn_mask = None
        if static_graph() or bool(pad.any()):
            # (B, 1, 1, T), True = may attend. An utterance with no frames attends to everything so that
            # softmax stays finite; its rows are padding and are zeroed below.
            attn_mask = (~pad | (lengths == 0).unsqueeze(1)).view(x.shape[0], 1, 1, x.shape[1])
        # Relative offsets, not absolute places: a valid frame's bias does not depend on the padding after it.
        bias = self.relative_position(x.shape[1]) if self.relative_position is not None else None
        for layer in self.layers:
            if self.training and self.layerdrop > 0 and torch.rand(()) < self.layerdrop:
                continue
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(layer, x, attn_mask, bias, use_reentrant=False)
            else:
                x = layer(x, attn_mask, bias)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x.masked_fill(pad.unsqueeze(-1), 0.0)
