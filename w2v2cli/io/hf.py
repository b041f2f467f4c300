"""Hugging Face `transformers` folders of the wav2vec 2.0 family <-> the native model.

Reads `*ForCTC`, `*Model` and `Wav2Vec2ForPreTraining` folders of wav2vec 2.0 (group-norm BASE and layer-norm /
stable-layer-norm LARGE-LV60 forms), HuBERT, data2vec-audio and WavLM, and MMS models with attention adapters
(one `adapter.LANG.safetensors` per language beside the weights, chosen with `language`). All run on the one
model core (`ModelConfig.family` and the fields after it say what a family adds); transformers itself is not
needed to load them, and `save_hf_folder` writes each back in its own family's layout.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
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
    # data2vec-audio: stacked positional convs (their LayerNorms have no weights)
    ("encoder.pos_conv_embed.layers.{n}.conv.{p}", "transformer.pos_conv.layers.{n}.{p}"),
    # WavLM: the relative position table (layer 0 holds it) and each layer's gate
    ("encoder.layers.0.attention.rel_attn_embed.weight", "transformer.relative_position.embedding.weight"),
    ("encoder.layers.{n}.attention.gru_rel_pos_linear.{p}", "transformer.layers.{n}.attention.gate.{p}"),
    ("encoder.layers.{n}.attention.gru_rel_pos_const", "transformer.layers.{n}.attention.gate_const"),
    # MMS attention adapters
    ("encoder.layers.{n}.adapter_layer.norm.{p}", "transformer.layers.{n}.adapter.norm.{p}"),
    ("encoder.layers.{n}.adapter_layer.linear_1.{p}", "transformer.layers.{n}.adapter.down.{p}"),
    ("encoder.layers.{n}.adapter_layer.linear_2.{p}", "transformer.layers.{n}.adapter.up.{p}"),
]


@dataclass(frozen=True)
class Layout:
    """How one family's transformers checkpoints name things."""

    prefix: str        # weight names of *ForCTC / *ForPreTraining start with it (bare *Model folders lack it)
    architecture: str  # class-name prefix: Wav2Vec2ForCTC, HubertForCTC, ...


# model_type -> layout; the keys are ModelConfig.family's values (config.FAMILIES).
LAYOUTS = {
    "wav2vec2": Layout("wav2vec2.", "Wav2Vec2"),
    "hubert": Layout("hubert.", "Hubert"),
    "data2vec-audio": Layout("data2vec_audio.", "Data2VecAudio"),
    "wavlm": Layout("wavlm.", "WavLM"),
}
ADAPTER_FILE = "adapter.{}.safetensors"  # transformers' WAV2VEC2_ADAPTER_SAFE_FILE
ADAPTER_PICKLE = "adapter.{}.bin"
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
    "add_adapter": "convolutional adapter layers",
    "conv_pos_batch_norm": "batch-norm positional convolutions",
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


def check_config(folder) -> str:
    """The family of a Hugging Face folder from its config.json alone (no weights needed: a model this toolkit
    cannot run is refused before gigabytes of weights are fetched); ModelFileError if it is not one."""
    folder = Path(folder)
    hf = _read_json(folder / "config.json")
    config_from_hf(hf, None, with_ctc_head=False, folder=folder)
    return _family(hf, folder)


def _family(hf: dict, folder: Path) -> str:
    family = hf.get("model_type", "wav2vec2")
    if family not in LAYOUTS:
        raise ModelFileError(folder, f"model_type {family!r} is not a model this toolkit runs (it runs "
                                     f"{', '.join(LAYOUTS)})")
    layout = LAYOUTS[family]
    architectures = hf.get("architectures") or []
    if architectures and not architectures[0].startswith(layout.architecture):
        raise ModelFileError(folder, f"architecture {architectures[0]} does not match model_type {family!r}")
    return family


def _family_fields(family: str, hf: dict) -> dict:
    """ModelConfig fields for what a family adds to wav2vec 2.0 (transformers' defaults where a key is absent)."""
    if family == "data2vec-audio":  # LayerNorm on every conv layer, post-LN, stacked positional convs
        return {"feature_norm": "layer", "layer_norm_first": False,
                "pos_conv_depth": hf.get("num_conv_pos_embeddings", 5),
                "pos_conv_kernel": hf.get("conv_pos_kernel_size", 19)}
    fields = {"feature_norm": hf.get("feat_extract_norm", "group"),
              "layer_norm_first": bool(hf.get("do_stable_layer_norm", False)),
              "pos_conv_kernel": hf.get("num_conv_pos_embeddings", 128)}
    if family == "hubert":
        fields["feature_projection_norm"] = bool(hf.get("feat_proj_layer_norm", True))
    if family == "wavlm":
        fields["relative_position_buckets"] = hf.get("num_buckets", 320)
        fields["relative_position_max_distance"] = hf.get("max_bucket_distance", 800)
    return fields


def config_from_hf(hf: dict, preprocessor: dict | None, with_ctc_head: bool, folder: Path) -> ModelConfig:
    family = _family(hf, folder)
    for key, what in _UNSUPPORTED.items():
        if hf.get(key):
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
            conv_bias=bool(hf.get("conv_bias", False)),
            sample_rate=int(preprocessor.get("sampling_rate", ModelConfig.sample_rate)),
            # transformers' feature extractor normalizes unless told not to.
            normalize_waveform=bool(preprocessor.get("do_normalize", True)),
            dim=hf.get("hidden_size", 768),
            num_layers=hf.get("num_hidden_layers", 12),
            num_heads=hf.get("num_attention_heads", 12),
            ffn_dim=hf.get("intermediate_size", 3072),
            activation=hf.get("hidden_act", "gelu"),
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-5)),
            pos_conv_groups=hf.get("num_conv_pos_embedding_groups", 16),
            dropout=float(hf.get("hidden_dropout", 0.1)),
            attention_dropout=float(hf.get("attention_dropout", 0.1)),
            activation_dropout=float(hf.get("activation_dropout", 0.1)),
            feature_dropout=float(hf.get("feat_proj_dropout", 0.0)),
            final_dropout=float(hf.get("final_dropout", 0.1)),
            layerdrop=float(hf.get("layerdrop", 0.1)),
            vocab_size=int(hf.get("vocab_size", 32)) if with_ctc_head else 0,
            family=family,
            adapter_dim=int(hf.get("adapter_attn_dim") or 0),
            **_family_fields(family, hf),
        )
    except (ConfigError, TypeError, ValueError) as exc:
        raise ModelFileError(folder / "config.json", str(exc)) from None


def vocab_from_hf(folder: Path, hf: dict, vocab_size: int, language: str | None = None) -> Vocabulary:
    """The CTC vocabulary; of `language` where vocab.json holds one per language (MMS)."""
    vocab_file = folder / "vocab.json"
    token_to_id = _read_json(vocab_file)
    if _is_nested(token_to_id):
        if language is None:
            raise ModelFileError(vocab_file, "it holds one vocabulary per language: choose one with --language "
                                             f"({_some(sorted(token_to_id))})")
        if language not in token_to_id:
            raise ModelFileError(vocab_file, f"--language {language}: no vocabulary for it; it has "
                                             f"{_some(sorted(token_to_id))}")
        token_to_id = token_to_id[language]
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


def state_from_hf(hf_state: dict[str, torch.Tensor], folder: Path, family: str = "wav2vec2") -> dict[str, torch.Tensor]:
    """Rename HF keys to native ones and fuse q/k/v projections into one QKV projection."""
    state: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    prefix = LAYOUTS[family].prefix
    for key, value in hf_state.items():
        key = key.removeprefix(prefix)
        if key.startswith(_IGNORED_PREFIXES):
            continue
        m = _QKV.fullmatch(key)
        if m:
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        native = _rename(key, _FROM_HF)
        if native is None:
            raise ModelFileError(folder, f"unexpected weight {key!r}: not a {family} model this toolkit reads")
        state[native] = value
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ModelFileError(folder, f"layer {layer}: incomplete attention projections")
        state[f"transformer.layers.{layer}.attention.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_hf_folder(folder, language: str | None = None) -> Wav2Vec2:
    """The model in a transformers folder; for an MMS adapter model, with the adapter and vocabulary of
    `language` (default: the folder's target language, as transformers picks it)."""
    folder = Path(folder)
    hf = _read_json(folder / "config.json")
    hf_state = _read_weights(folder)
    if hf.get("adapter_attn_dim"):
        default = _default_language(folder)
        language = language or default
        # The weights hold the default language's adapter (MMS: English); another needs its file.
        if language is not None and (language != default or language in adapter_languages(folder)):
            hf_state.update(_read_adapter(folder, language))
    elif language is not None and not _is_nested(_read_json(folder / "vocab.json", required=False)):
        raise ModelFileError(folder, f"--language {language}: this model has no language adapters and one "
                                     "vocabulary (only MMS-style models have languages to choose from)")
    has_head = any(k.startswith("lm_head.") for k in hf_state)
    preprocessor = _read_preprocessor(folder)
    config = config_from_hf(hf, preprocessor, has_head, folder)
    if has_head and hf.get("adapter_attn_dim"):  # an adapter brings its own head size (transformers' load_adapter)
        config = config.replace(vocab_size=hf_state["lm_head.weight"].shape[0])
    vocab = vocab_from_hf(folder, hf, config.vocab_size, language) if has_head else None
    state = state_from_hf(hf_state, folder, config.family)
    # Pretrained folders without SpecAugment settings carry no mask embedding; initialize one as the model would.
    state.setdefault("mask_embedding", torch.empty(config.dim).uniform_())
    return build_loaded(folder, config, vocab, state)


def adapter_languages(folder) -> list[str]:
    """Languages whose adapter file is in `folder` (adapter.LANG.safetensors or .bin)."""
    found = {p.name.split(".")[1] for p in Path(folder).glob("adapter.*.*")
             if p.name.count(".") == 2 and p.suffix in (".safetensors", ".bin")}
    return sorted(found)


def model_languages(folder) -> list[str]:
    """The languages a folder offers: its adapter files' and its per-language vocabularies' (MMS); [] for one."""
    vocab = _read_json(Path(folder) / "vocab.json", required=False)
    nested = set(vocab) if _is_nested(vocab) else set()
    return sorted(nested | set(adapter_languages(folder)))


def _default_language(folder: Path) -> str | None:
    """The language an adapter folder runs without --language: the tokenizer's target_lang, else English when
    the vocabulary has it (transformers' own default), else None (the weights' own adapter, a flat vocabulary)."""
    tokenizer = _read_json(folder / "tokenizer_config.json", required=False) or {}
    vocab = _read_json(folder / "vocab.json", required=False) or {}
    if not _is_nested(vocab):
        return None
    for candidate in (tokenizer.get("target_lang"), "eng"):
        if candidate in vocab:
            return candidate
    raise ModelFileError(folder, f"this model holds {len(vocab)} languages: choose one with --language "
                                 f"({_some(sorted(vocab))})")


def _read_adapter(folder: Path, language: str) -> dict[str, torch.Tensor]:
    """The weights of one language's adapter: every layer's adapter and the CTC head."""
    path = folder / ADAPTER_FILE.format(language)
    if path.exists():
        state = read_safetensors(path)[0]
    elif (folder / ADAPTER_PICKLE.format(language)).exists():
        state = safe_torch_load(folder / ADAPTER_PICKLE.format(language))
    else:
        known = model_languages(folder)
        raise ModelFileError(folder, f"--language {language}: no adapter {path.name} here"
                                     + (f"; languages: {_some(known)}" if known else ""))
    if not isinstance(state, dict) or "lm_head.weight" not in state:
        raise ModelFileError(path, "not an adapter file: it has no lm_head.weight")
    return state


def _is_nested(vocab) -> bool:
    """Whether a vocab.json holds one vocabulary per language (MMS) rather than one."""
    return isinstance(vocab, dict) and bool(vocab) and all(isinstance(v, dict) for v in vocab.values())


def _some(names: list[str], limit: int = 20) -> str:
    """A list for a one-line message: all of a short one, the first `limit` and a count of a long one."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])}, ... ({len(names)} in all)"


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
    arch = LAYOUTS[cfg.family].architecture
    out = {
        "architectures": [f"{arch}ForCTC" if model.ctc_head is not None else f"{arch}Model"],
        "model_type": cfg.family,
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
        **_family_config(cfg),
    }
    if model.vocab is not None:
        out["vocab_size"] = len(model.vocab)
        out["pad_token_id"] = model.vocab.blank
    return out


def _family_config(cfg: ModelConfig) -> dict:
    """config.json keys of what the family adds (the inverse of _family_fields)."""
    out = {"adapter_attn_dim": cfg.adapter_dim} if cfg.adapter_dim else {}
    if cfg.family == "data2vec-audio":
        if cfg.feature_norm != "layer" or cfg.layer_norm_first or not cfg.pos_conv_depth:
            raise ConfigError("a data2vec-audio model has LayerNorm conv layers, a post-LN Transformer and stacked "
                              "positional convolutions")
        return {**out, "num_conv_pos_embeddings": cfg.pos_conv_depth, "conv_pos_kernel_size": cfg.pos_conv_kernel}
    if cfg.pos_conv_depth:
        raise ConfigError(f"stacked positional convolutions have no {cfg.family} form in transformers")
    if cfg.family == "hubert":
        out["feat_proj_layer_norm"] = cfg.feature_projection_norm
    elif not cfg.feature_projection_norm:
        raise ConfigError(f"a {cfg.family} model always normalizes its conv features")
    if cfg.family == "wavlm":
        out.update(num_buckets=cfg.relative_position_buckets, max_bucket_distance=cfg.relative_position_max_distance)
    elif cfg.relative_position_buckets:
        raise ConfigError(f"a relative position bias has no {cfg.family} form in transformers")
    if cfg.adapter_dim and cfg.family != "wav2vec2":
        raise ConfigError(f"attention adapters have no {cfg.family} form in transformers")
    return out


def hf_state(model: Wav2Vec2) -> dict[str, torch.Tensor]:
    """The model's weights under transformers' names (q/k/v split again, weight norm as parametrizations)."""
    qkv = re.compile(r"transformer\.layers\.(\d+)\.attention\.qkv\.(weight|bias)")
    # A bare *Model (no CTC head) has no prefix.
    prefix = LAYOUTS[model.config.family].prefix if model.ctc_head is not None else ""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        m = qkv.fullmatch(key)
        if m:
            for name, part in zip("qkv", value.chunk(3)):
                out[f"{prefix}encoder.layers.{m.group(1)}.attention.{name}_proj.{m.group(2)}"] = part
            continue
        name = _rename(key, _TO_HF)
        if name is None:
            raise ConfigError(f"no transformers name for weight {key!r}")
        out[name if name.startswith("lm_head.") else f"{prefix}{name}"] = value
    return out


def save_adapter(model: Wav2Vec2, path) -> Path:
    """Write the model's attention adapters and CTC head as transformers' `load_adapter` reads them
    (adapter.LANG.safetensors: wav2vec2.encoder.layers.N.adapter_layer.* and lm_head.*), atomically."""
    from safetensors.torch import save_file

    from .atomic import atomic_path

    if not model.config.adapter_dim or model.ctc_head is None or model.config.family != "wav2vec2":
        raise ConfigError("only a wav2vec 2.0 CTC model with attention adapters has an adapter file to write")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in hf_state(model).items()
               if k.startswith("lm_head.") or ".adapter_layer." in k}
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
    except OSError as exc:
        raise ModelFileError(path, f"cannot write: {exc.strerror or exc}") from None
    return path


BATCH_NOTE = """
## Batched inference

{why} so its outputs for an utterance change with the padding it gets; run it one utterance at a time (no
attention mask) for exact results. w2v2 keeps each utterance to its own valid frames, so batched and single
outputs agree.
"""
_GROUP_NORM_WHY = ("This model normalizes the first convolution's output with GroupNorm over time (the BASE form). "
                   "transformers computes those statistics over the padded batch,")
_STACKED_WHY = ("This model's positional convolutions are stacked. transformers lets the padding after an utterance "
                "into every convolution after the first,")


def padding_free_in_transformers(config: ModelConfig) -> bool:
    """Whether transformers' outputs for a padded batch equal its outputs one utterance at a time."""
    return config.feature_norm != "group" and not config.pos_conv_depth


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
    arch = config["architectures"][0]
    card = [f"# {cfg.family} ({cfg.num_layers} x {cfg.dim}, {head})",
            "", f"Exported by w2v2 (`w2v2 export --format hf`). Load with `{arch}.from_pretrained` and "
            "`Wav2Vec2Processor.from_pretrained`; audio at " f"{cfg.sample_rate} Hz mono."]
    if not padding_free_in_transformers(cfg):
        card.append(BATCH_NOTE.format(why=_GROUP_NORM_WHY if cfg.feature_norm == "group" else _STACKED_WHY))
    (folder / "README.md").write_text("\n".join(card) + "\n")
    return folder
