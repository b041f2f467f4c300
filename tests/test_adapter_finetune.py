"""Adapter fine-tuning (`finetune --adapter LANG`): only the attention adapters and the CTC head learn, the rest
stays bit-identical, and the adapter file it writes is the one transformers' `load_adapter` reads."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import SAMPLE_RATE, SMALL, VOCAB, speechlike

from w2v2cli import build_model, load_model, preset, save_model
from w2v2cli.decode import greedy_decode
from w2v2cli.errors import ConfigError
from w2v2cli.train.config import FinetuneConfig
from w2v2cli.train.finetune import finetune, recipe_defaults, with_adapters

transformers = pytest.importorskip("transformers")

# A language whose letters the base vocabulary cannot spell: a new vocabulary and CTC head come with the adapter.
XYZ_TEXTS = ["नमस्ते दुनिया", "नया दिन", "दुनिया नमस्ते नया"]


def mms_folder(path):
    """A random transformers Wav2Vec2ForCTC with attention adapters (English vocabulary), saved as MMS saves."""
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        **SMALL, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, adapter_attn_dim=8,
        vocab_size=len(VOCAB), pad_token_id=0, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0,
    )
    model = transformers.Wav2Vec2ForCTC(config).eval()
    model.save_pretrained(path)
    (path / "vocab.json").write_text(json.dumps({"eng": {t: i for i, t in enumerate(VOCAB)}}))
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, do_normalize=True,
                                                      return_attention_mask=True)
    extractor.save_pretrained(path)
    return path


@pytest.fixture
def xyz_data(tmp_path):
    lines = []
    for i, text in enumerate(XYZ_TEXTS):
        wav = tmp_path / f"u{i}.wav"
        sf.write(wav, speechlike(SAMPLE_RATE + 4000 * i, seed=i), SAMPLE_RATE)
        lines.append(json.dumps({"audio": str(wav), "text": text}, ensure_ascii=False))
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def configure(hours):
    train, tune = recipe_defaults(hours)
    train = train.replace(max_updates=4, lr=5e-3, max_tokens=200_000, max_sample_size=200_000, update_freq=1,
                          log_every=1, valid_every=100, save_every=100, num_workers=0)
    return train, tune.replace(adapter="xyz", freeze_updates=10, mask_prob=0.0, mask_channel_prob=0.0)


def test_adapter_training_moves_only_adapters_and_head_and_loads_in_transformers(tmp_path, xyz_data):
    folder = mms_folder(tmp_path / "mms")
    base = load_model(folder)
    summary = finetune(xyz_data, tmp_path / "run", init=folder, configure=configure)
    out = tmp_path / "run"
    assert sorted(p.name for p in out.glob("adapter.*")) == ["adapter.xyz.safetensors"]
    tuned = load_model(out / "model.safetensors")
    assert "ि" in tuned.vocab.tokens and "्" in tuned.vocab.tokens  # vowel sign and virama kept
    before, after = base.state_dict(), tuned.state_dict()
    moved = {k for k in after if k in before and before[k].shape == after[k].shape
             and not torch.equal(before[k], after[k])}
    assert moved and all(".adapter." in k for k in moved), sorted(moved)[:5]
    assert summary["adapter_files"]

    # transformers: the adapter file, dropped into the MMS folder, loads with load_adapter("xyz").
    shutil.copy(out / "adapter.xyz.safetensors", folder)
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["xyz"] = json.loads((out / "vocab.xyz.json").read_text(encoding="utf-8"))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    hf = transformers.Wav2Vec2ForCTC.from_pretrained(folder).eval()
    hf.load_adapter("xyz")
    ours = load_model(folder, language="xyz")
    assert ours.vocab.tokens == tuned.vocab.tokens
    wave = speechlike(SAMPLE_RATE, seed=7)
    extractor = transformers.Wav2Vec2FeatureExtractor.from_pretrained(folder)
    inputs = extractor([wave], sampling_rate=SAMPLE_RATE, return_tensors="pt")
    x = torch.from_numpy(np.asarray(wave, dtype=np.float32))[None]
    with torch.no_grad():
        reference = hf(inputs.input_values).logits
        logits, _ = ours(x, torch.tensor([x.shape[1]]))
        native, _ = tuned(x, torch.tensor([x.shape[1]]))
    assert (logits - reference).abs().max().item() <= 1e-4
    assert (native - reference).abs().max().item() <= 1e-4
    # The transcripts: transformers' tokenizer with the language's vocabulary, and w2v2's greedy decoding.
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), target_lang="xyz")
    theirs = tokenizer.batch_decode(reference.argmax(-1))[0].replace("<unk>", "")
    assert greedy_decode(logits, torch.tensor([logits.shape[1]]), ours.vocab) == [" ".join(theirs.split())]
    assert theirs.strip()  # not a comparison of empty transcripts


def test_fresh_adapters_start_as_the_model_and_need_pre_ln(tmp_path):
    model = build_model(preset("tiny", layer_norm_first=True, vocab_size=0)).eval()
    with_new = with_adapters(model, FinetuneConfig(adapter="xyz", adapter_dim=4), seed=0).eval()
    assert with_new.config.adapter_dim == 4
    x = torch.from_numpy(speechlike(8000))[None]
    with torch.no_grad():
        assert torch.equal(model(x)[0], with_new(x)[0])
    post_ln = build_model(preset("tiny", vocab_size=0))
    with pytest.raises(ConfigError, match="pre-LN"):
        with_adapters(post_ln, FinetuneConfig(adapter="xyz"), seed=0)
    save_model(post_ln, tmp_path / "m.safetensors")
    with pytest.raises(ConfigError, match="language code"):
        FinetuneConfig(adapter="x/y")
