"""Randomly initialized transformers wav2vec 2.0 models saved as Hugging Face folders: the parity reference."""

import json

import torch

from w2v2cli import ModelConfig

transformers = __import__("pytest").importorskip("transformers")

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|"] + list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")

SAMPLE_RATE = ModelConfig.sample_rate  # the rate the reference models' feature extractors are saved with

SMALL = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
    conv_dim=(32, 32, 32, 32), conv_kernel=(10, 3, 3, 2), conv_stride=(5, 2, 2, 2),
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
)
FORMS = {
    "group": dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False),
    "layer": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
}


def make_hf_folder(path, form="group", arch="Wav2Vec2ForCTC", size=SMALL, seed=0, safe=True, **overrides):
    """Save a random `arch` model of the given form with tokenizer and feature extractor; return the HF model."""
    torch.manual_seed(seed)
    config = transformers.Wav2Vec2Config(
        **size, **FORMS[form], vocab_size=len(VOCAB), pad_token_id=0, hidden_dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0, **overrides,
    )
    model = getattr(transformers, arch)(config).eval()
    if arch == "Wav2Vec2ForCTC":
        # Random init gives near-uniform logits; a larger head makes greedy paths well separated.
        with torch.no_grad():
            model.lm_head.weight.normal_(0, 0.1)
    model.save_pretrained(path, safe_serialization=safe)
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(path / "vocab.json"))
    extractor = transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True,
        return_attention_mask=form == "layer",
    )
    transformers.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(path)
    return model, extractor, tokenizer


def hf_logits(model, extractor, waveforms):
    """transformers' output for a list of numpy waveforms, normalized and padded by its own feature extractor."""
    inputs = extractor(waveforms, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(inputs.input_values, attention_mask=inputs.get("attention_mask"))
    return out.logits if hasattr(out, "logits") else out.last_hidden_state
