"""Hugging Face `transformers` wav2vec 2.0 folders <-> the native model.

Reads `Wav2Vec2ForCTC`, `Wav2Vec2ForPreTraining` and `Wav2Vec2Model` folders in both the group-norm (BASE)
and layer-norm / stable-layer-norm (LARGE-LV60) forms. transformers itself is not needed to load them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..config import ACTIVATIONS, ModelConfig
from ..errors import ConfigError, ModelFileError
from ..model import Wav2Vec2
from ..text import Vocabulary
from .common import build_loaded, read_safetensors, safe_torch_load

# Weights of heads this toolkit does not use for inference (the pretraining head is rebuilt by `pretrain`).
_IGNORED_PREFIXES = ("quantizer.", "project_hid.", "project_q.")

# One table for both directions: (transformers name without the "wav2vec2." prefix, native name); {n} is a layer
# number, {p} weight or bias. q/k/v projections are split/fused separately (_QKV).
_NAMES = [
    ("feature_extractor.conv_layers.{n}.conv.{p}", "feature_encoder.layers.{n}.conv.{p}"),
    ("feature_extractor.conv_layers.{n}.layer_norm.{p}", "feature_encoder.layers.{n}.norm.{p}"),
    ("feature_projection.layer_norm.{p}", "feature_projection.layer_norm.{p}"),
    ("feature_projection.projection.{p}", "feature_projection.projection.{p}"),
    ("masked_spec_embed", "mask_embedding"),
    ("encoder.pos_conv_embed.conv.parametrizations.weight.original0", "transformer.pos_conv.weight_g"),
    ("encoder.pos_conv_embed.conv.parametrizations.weight.original1", "transformer.pos_conv.weight_v"),
    ("encoder.pos_conv_embed.conv.bias", "transformer.pos_conv.bias"),
    ("encoder.layer_norm.{p}", "transformer.layer_norm.{p}"),
    ("encoder.layers.{n}.attention.out_proj.{p}", "transformer.layers.{n}.attention.out_proj.{p}"),
    ("encoder.layers.{n}.layer_norm.{p}", "transformer.layers.{n}.attention_norm.{p}"),
    ("encoder.layers.{n}.feed_forward.intermediate_dense.{p}", "transformer.layers.{n}.feed_forward.intermediate.{p}"),
    ("encoder.layers.{n}.feed_forward.output_dense.{p}", "transformer.layers.{n}.feed_forward.output.{p}"),
    ("encoder.layers.{n}.final_layer_norm.{p}", "transformer.layers.{n}.final_norm.{p}"),
    ("lm_head.{p}", "ctc_head.{p}"),
]
# Older transformers versions wrote the weight norm as weight_g / weight_v; read those too.
_LEGACY_NAMES = [
    ("encoder.pos_conv_embed.conv.weight_g", "transformer.pos_conv.weight_g"),
    ("encoder.pos_conv_embed.conv.weight_v", "transformer.pos_conv.weight_v"),
]


def _name_pattern(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{n\}", r"(?P<n>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)"))


_FROM_HF = [(_name_pattern(hf), native) for hf, native in _NAMES + _LEGACY_NAMES]
_TO_HF = [(_name_pattern(native), hf) for hf, native in _NAMES]


def _rename(key: str, table) -> str | None:
    for pattern, template in table:
        m = pattern.fullmatch(key)
        if m:
            return template.format(**m.groupdict())
    return None


_QKV = re.compile(r"encoder\.layers\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)")
_UNSUPPORTED = {
    "add_adapter": "adapter layers",
    "adapter_attn_dim": "attention adapters",
    "use_weighted_layer_sum": None,  # only used by classification heads; harmless
}


def _read_json(path: Path, required: bool = True) -> dict | None:
    if not path.exists():
        if required:
            raise ModelFileError(path.parent, f"not a Hugging Face model folder: {path.name} is missing")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(path, f"unreadable JSON ({exc})") from None


def config_from_hf(hf: dict, preprocessor: dict | None, with_ctc_head: bool, folder: Path) -> ModelConfig:
    if hf.get("model_type", "wav2vec2") != "wav2vec2":
        raise ModelFileError(folder, f"model_type {hf.get('model_type')!r} is not wav2vec2")
    for key, what in _UNSUPPORTED.items():
        if what and hf.get(key):
            raise ModelFileError(folder, f"{what} ({key}) are not supported")
    if hf.get("feat_extract_activation", "gelu") != "gelu":
        raise ModelFileError(folder, f"feat_extract_activation {hf['feat_extract_activation']!r} is not supported")
    if hf.get("hidden_act", "gelu") not in ACTIVATIONS:
        raise ModelFileError(folder, f"hidden_act {hf['hidden_act']!r} is not supported")
    conv_dim, conv_kernel, conv_stride = hf.get("conv_dim"), hf.get("conv_kernel"), hf.get("conv_stride")
    if not (conv_dim and len(conv_dim) == len(conv_kernel or ()) == len(conv_stride or ())):
        raise ModelFileError(folder, "config.json: conv_dim, conv_kernel and conv_stride must have equal lengths")
    preprocessor = preprocessor or {}
    try:
        return ModelConfig(
            conv_layers=tuple(zip(conv_dim, conv_kernel, conv_stride)),
            feature_norm=hf.get("feat_extract_norm", "group"),
            conv_bias=bool(hf.get("conv_bias", False)),
            sample_rate=int(preprocessor.get("sampling_rate", ModelConfig.sample_rate)),
            # transformers' feature extractor normalizes unless told not to.
            normalize_waveform=bool(preprocessor.get("do_normalize", True)),
            dim=hf.get("hidden_size", 768),
            num_layers=hf.get("num_hidden_layers", 12),
            num_heads=hf.get("num_attention_heads", 12),
            ffn_dim=hf.get("intermediate_size", 3072),
            activation=hf.get("hidden_act", "gelu"),
            layer_norm_first=bool(hf.get("do_stable_layer_norm", False)),
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-5)),
            pos_conv_kernel=hf.get("num_conv_pos_embeddings", 128),
            pos_conv_groups=hf.get("num_conv_pos_embedding_groups", 16),
            dropout=float(hf.get("hidden_dropout", 0.1)),
            attention_dropout=float(hf.get("attention_dropout", 0.1)),
            activation_dropout=float(hf.get("activation_dropout", 0.1)),
            feature_dropout=float(hf.get("feat_proj_dropout", 0.0)),
            final_dropout=float(hf.get("final_dropout", 0.1)),
            layerdrop=float(hf.get("layerdrop", 0.1)),
            vocab_size=int(hf.get("vocab_size", 32)) if with_ctc_head else 0,
        )
    except (ConfigError, TypeError, ValueError) as exc:
        raise ModelFileError(folder / "config.json", str(exc)) from None


def vocab_from_hf(folder: Path, hf: dict, vocab_size: int) -> Vocabulary:
    vocab_file = folder / "vocab.json"
    token_to_id = _read_json(vocab_file)
    if token_to_id and all(isinstance(v, dict) for v in token_to_id.values()):
        raise ModelFileError(vocab_file, "multi-language vocabularies (one per language) are not supported")
    try:
        by_id = {int(i): str(t) for t, i in token_to_id.items()}
    except (TypeError, ValueError):
        raise ModelFileError(vocab_file, "token ids must be integers") from None
    if by_id and max(by_id) >= vocab_size:
        raise ModelFileError(vocab_file, f"token id {max(by_id)} does not fit the CTC head of {vocab_size} outputs")
    # Tokens the tokenizer added later; those the head cannot emit (e.g. <s> appended after training) are moot.
    tokenizer = _read_json(folder / "tokenizer_config.json", required=False) or {}
    added = {int(i): info["content"] if isinstance(info, dict) else str(info)
             for i, info in (tokenizer.get("added_tokens_decoder") or {}).items()}
    added.update({int(i): t for t, i in (_read_json(folder / "added_tokens.json", required=False) or {}).items()})
    for i, token in added.items():
        if i < vocab_size:
            by_id.setdefault(i, token)
    # Ids the tokenizer does not name still exist as head outputs; give them inert names.
    tokens = tuple(by_id.get(i, f"<unused_{i}>") for i in range(vocab_size))

    def special(name: str, default: str | None) -> str | None:
        value = tokenizer.get(name, default)
        return value.get("content") if isinstance(value, dict) else value

    pad = special("pad_token", "<pad>")
    blank = hf.get("pad_token_id")
    if blank is None:
        blank = tokens.index(pad) if pad in tokens else 0
    try:
        return Vocabulary(
            tokens, blank=int(blank), word_delimiter=special("word_delimiter_token", "|"),
            unk=special("unk_token", "<unk>"),
        )
    except ConfigError as exc:
        raise ModelFileError(vocab_file, str(exc)) from None


def _read_preprocessor(folder: Path) -> dict | None:
    """Feature-extractor settings: preprocessor_config.json, or the feature_extractor part of the
    processor_config.json that newer transformers versions write instead."""
    preprocessor = _read_json(folder / "preprocessor_config.json", required=False)
    if preprocessor is None:
        processor = _read_json(folder / "processor_config.json", required=False) or {}
        preprocessor = processor.get("feature_extractor")
    return preprocessor


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    single = folder / "model.safetensors"
    if single.exists():
        return read_safetensors(single)[0]
    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set((_read_json(index).get("weight_map") or {}).values()))
        state = {}
        for shard in shards:
            state.update(read_safetensors(folder / shard)[0])
        return state
    pickled = folder / "pytorch_model.bin"
    if pickled.exists():
        state = safe_torch_load(pickled)
        if not isinstance(state, dict):
            raise ModelFileError(pickled, "does not hold a state dict")
        return state
    raise ModelFileError(folder, "no weights: expected model.safetensors or pytorch_model.bin")


def state_from_hf(hf_state: dict[str, torch.Tensor], folder: Path) -> dict[str, torch.Tensor]:
    """Rename HF keys to native ones and fuse q/k/v projections into one QKV projection."""
    state: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in hf_state.items():
        key = key.removeprefix("wav2vec2.")
        if key.startswith(_IGNORED_PREFIXES):
            continue
        m = _QKV.fullmatch(key)
        if m:
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        native = _rename(key, _FROM_HF)
        if native is None:
            raise ModelFileError(folder, f"unexpected weight {key!r}: not a wav2vec 2.0 model this toolkit reads")
        state[native] = value
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ModelFileError(folder, f"layer {layer}: incomplete attention projections")
        state[f"transformer.layers.{layer}.attention.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_hf_folder(folder) -> Wav2Vec2:
    folder = Path(folder)
    hf = _read_json(folder / "config.json")
    hf_state = _read_weights(folder)
    has_head = any(k.startswith("lm_head.") for k in hf_state)
    architectures = hf.get("architectures") or []
    if architectures and not any(a.startswith("Wav2Vec2") for a in architectures):
        raise ModelFileError(folder, f"architecture {architectures[0]} is not a wav2vec 2.0 model")
    preprocessor = _read_preprocessor(folder)
    config = config_from_hf(hf, preprocessor, has_head, folder)
    vocab = vocab_from_hf(folder, hf, config.vocab_size) if has_head else None
    state = state_from_hf(hf_state, folder)
    # Pretrained folders without SpecAugment settings carry no mask embedding; initialize one as the model would.
    state.setdefault("mask_embedding", torch.empty(config.dim).uniform_())
    return build_loaded(folder, config, vocab, state)


# Wav2Vec2ForPreTraining's head -> the native pretraining head (project_hid is fairseq's final_proj).
_HEAD_RENAMES = {
    "quantizer.codevectors": "quantizer.codevectors",
    "quantizer.weight_proj.weight": "quantizer.weight_proj.weight",
    "quantizer.weight_proj.bias": "quantizer.weight_proj.bias",
    "project_q.weight": "project_q.weight",
    "project_q.bias": "project_q.bias",
    "project_hid.weight": "final_proj.weight",
    "project_hid.bias": "final_proj.bias",
}


def load_hf_pretraining_head(folder) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The quantizer and projections of a Wav2Vec2ForPreTraining folder and their sizes (PretrainConfig
    fields), or None when the folder has no pretraining head."""
    folder = Path(folder)
    hf = _read_json(folder / "config.json")
    hf_state = _read_weights(folder)
    if "quantizer.codevectors" not in hf_state:
        return None
    missing = [k for k in _HEAD_RENAMES if k not in hf_state]
    if missing:
        raise ModelFileError(folder, f"incomplete pretraining head: no {missing[0]}")
    head = {ours: hf_state[theirs].float() for theirs, ours in _HEAD_RENAMES.items()}
    fields = {
        "codebook_groups": int(hf.get("num_codevector_groups", 2)),
        "codebook_entries": int(hf.get("num_codevectors_per_group", 320)),
        "codevector_dim": int(hf.get("codevector_dim", 256)),
        "final_dim": int(hf.get("proj_codevector_dim", 256)),
        "num_negatives": int(hf.get("num_negatives", 100)),
        "logit_temp": float(hf.get("contrastive_logits_temperature", 0.1)),
        "diversity_weight": float(hf.get("diversity_loss_weight", 0.1)),
    }
    return head, fields


def hf_config(model: Wav2Vec2) -> dict:
    """config.json of a transformers Wav2Vec2ForCTC (or Wav2Vec2Model without a CTC head) equal to `model`."""
    cfg = model.config
    out = {
        "architectures": ["Wav2Vec2ForCTC" if model.ctc_head is not None else "Wav2Vec2Model"],
        "model_type": "wav2vec2",
        "conv_dim": [c for c, _, _ in cfg.conv_layers],
        "conv_kernel": [k for _, k, _ in cfg.conv_layers],
        "conv_stride": [s for _, _, s in cfg.conv_layers],
        "num_feat_extract_layers": len(cfg.conv_layers),
        "feat_extract_norm": cfg.feature_norm,
        "feat_extract_activation": "gelu",
        "conv_bias": cfg.conv_bias,
        "hidden_size": cfg.dim,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.ffn_dim,
        "hidden_act": cfg.activation,
        "do_stable_layer_norm": cfg.layer_norm_first,
        "layer_norm_eps": cfg.layer_norm_eps,
        "num_conv_pos_embeddings": cfg.pos_conv_kernel,
        "num_conv_pos_embedding_groups": cfg.pos_conv_groups,
        "hidden_dropout": cfg.dropout,
        "attention_dropout": cfg.attention_dropout,
        "activation_dropout": cfg.activation_dropout,
        "feat_proj_dropout": cfg.feature_dropout,
        "final_dropout": cfg.final_dropout,
        "layerdrop": cfg.layerdrop,
        "ctc_loss_reduction": "mean",
        "ctc_zero_infinity": True,
    }
    if model.vocab is not None:
        out["vocab_size"] = len(model.vocab)
        out["pad_token_id"] = model.vocab.blank
    return out


def hf_state(model: Wav2Vec2) -> dict[str, torch.Tensor]:
    """The model's weights under transformers' names (q/k/v split again, weight norm as parametrizations)."""
    qkv = re.compile(r"transformer\.layers\.(\d+)\.attention\.qkv\.(weight|bias)")
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        m = qkv.fullmatch(key)
        if m:
            for name, part in zip("qkv", value.chunk(3)):
                out[f"wav2vec2.encoder.layers.{m.group(1)}.attention.{name}_proj.{m.group(2)}"] = part
            continue
        name = _rename(key, _TO_HF)
        if name is None:
            raise ConfigError(f"no transformers name for weight {key!r}")
        out[name if name.startswith("lm_head.") else f"wav2vec2.{name}"] = value
    if model.ctc_head is None:  # a bare Wav2Vec2Model has no "wav2vec2." prefix
        out = {k.removeprefix("wav2vec2."): v for k, v in out.items()}
    return out


GROUP_NORM_NOTE = """
## Batched inference

This model normalizes the first convolution's output with GroupNorm over time (the BASE form). transformers
computes those statistics over the padded batch, so its outputs for an utterance change with the padding it
gets; run it one utterance at a time (no attention mask) for exact results. w2v2 computes them per utterance
over its valid samples, so batched and single outputs agree.
"""


def save_hf_folder(model: Wav2Vec2, folder, dtype: torch.dtype = torch.float32) -> Path:
    """Write `model` as a transformers folder: config.json, model.safetensors, vocab.json, tokenizer and
    feature-extractor configs and a README. `folder` must not exist yet or be empty."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = hf_config(model)
    config["torch_dtype"] = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[dtype]
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in hf_state(model).items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "padding_side": "right",
        "padding_value": 0.0, "sampling_rate": cfg.sample_rate, "do_normalize": cfg.normalize_waveform,
        "return_attention_mask": cfg.feature_norm == "layer", "processor_class": "Wav2Vec2Processor",
    }, indent=2) + "\n")
    if model.vocab is not None:
        vocab = model.vocab
        (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab.tokens)},
                                                      ensure_ascii=False, indent=2) + "\n")
        special = {"pad_token": vocab.blank_token, "unk_token": vocab.unk or vocab.blank_token,
                   "word_delimiter_token": vocab.word_delimiter or "|"}
        (folder / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "Wav2Vec2CTCTokenizer", "processor_class": "Wav2Vec2Processor",
            "do_lower_case": False, "bos_token": None, "eos_token": None, **special,
        }, indent=2) + "\n")
        (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    head = f"CTC, {cfg.vocab_size} tokens" if cfg.vocab_size else "encoder"
    card = [f"# wav2vec 2.0 ({cfg.num_layers} x {cfg.dim}, {head})",
            "", "Exported by w2v2 (`w2v2 export --format hf`). Load with `Wav2Vec2ForCTC.from_pretrained` and "
            "`Wav2Vec2Processor.from_pretrained`; audio at " f"{cfg.sample_rate} Hz mono."]
    if cfg.feature_norm == "group":
        card.append(GROUP_NORM_NOTE)
    (folder / "README.md").write_text("\n".join(card) + "\n")
    return folder
