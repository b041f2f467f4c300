"""Any script: vocabularies keep letters with their combining marks (vowel signs, viramas, tone marks, diacritics),
NFC and NFD text give the same tokens, and every user of the text rules (fine-tuning, evaluation, alignment, the
word LM) reads a transcript the same way."""

import functools
import importlib.util
import json
import shutil
import subprocess
import sys
import unicodedata

import hypothesis
import hypothesis.strategies as st
import pytest
from helpers import run_cli

from w2v2cli.align import plan_transcript
from w2v2cli.data import Utterance, read_source
from w2v2cli.text import Vocabulary, encode_transcript, graphemes, training_characters
from w2v2cli.train.finetune import build_vocabulary

# (language, transcript, characters its vocabulary must hold: the marks that isalnum() would drop)
SCRIPTS = [
    ("hindi", "नमस्ते दुनिया", "\u094d\u0947\u0941\u093f\u093e"),  # virama, vowel signs e, u, i, aa
    ("tamil", "வணக்கம் உலகம்", "\u0bcd"),  # pulli (virama)
    ("tamil-vowels", "தமிழ் நாடு", "\u0bbf\u0bcd\u0bbe\u0bc1"),  # vowel signs i, aa, u and pulli
    ("thai", "สวัสดีชาวโลก ไม่ใช่", "\u0e31\u0e35\u0e48"),  # mai han-akat, sara ii, mai ek (a tone mark)
    ("arabic", "مَرْحَبًا بِالعالم", "\u064e\u0652\u064b\u0650"),  # fatha, sukun, fathatan, kasra
    ("cyrillic", "Привет, йод и ёж", "ПРИВЕТЙОДЁЖ"),
    ("greek", "Γειά σου κόσμε", "ΆΌΣ"),
    ("vietnamese", "Xin chào thế giới", "ÀẾỚ"),
    ("cjk", "你好，世界 こんにちは", "你好世界こんにちは"),
]


@pytest.mark.parametrize("name,text,needed", SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_vocabulary_keeps_marks(name, text, needed):
    vocab, dropped = build_vocabulary([Utterance("u", "u.wav", 16000, text)])
    missing = [c for c in needed if c not in vocab.tokens]
    assert not missing, [unicodedata.name(c) for c in missing]
    # Every letter of the transcript is spelled: nothing but punctuation is dropped, and the targets spell it back.
    assert all(unicodedata.category(c).startswith("P") for c in dropped), dropped
    ids, spelled, lost = encode_transcript(text, vocab)
    assert list(lost) == list(dropped.elements())
    assert vocab.ids_to_text(ids) == spelled == training_characters(text)[0]


def test_devanagari_no_longer_loses_vowel_signs():
    assert training_characters("नमस्ते दुनिया") == ("नमस्ते दुनिया", [])


@pytest.mark.parametrize("text", [t for _, t, _ in SCRIPTS] + ["Crème brûlée, Ỳ", "Ἀθῆναι ᾄδω"])
def test_nfc_and_nfd_give_the_same_tokens(text):
    nfc, nfd = unicodedata.normalize("NFC", text), unicodedata.normalize("NFD", text)
    assert training_characters(nfc) == training_characters(nfd)
    vocab = Vocabulary.from_characters(sorted(set(training_characters(nfc)[0].replace(" ", ""))))
    assert encode_transcript(nfc, vocab) == encode_transcript(nfd, vocab)
    assert encode_transcript(nfd, vocab)[2] == training_characters(nfc)[1]
    assert [w.tokens for w in plan_transcript(nfc, vocab)] == [w.tokens for w in plan_transcript(nfd, vocab)]


def test_case_folded_only_where_a_script_has_case():
    text, _ = training_characters("Ёлка ΐ हिंदी ไทย abc")
    assert text == unicodedata.normalize("NFC", "ЁЛКА Ϊ́ हिंदी ไทย ABC")
    # A lower-case vocabulary gets the transcript in lower case; uncased letters match as written.
    vocab = Vocabulary.from_characters("ёлкаहिंदी")
    assert encode_transcript("ЁЛКА हिंदी", vocab)[1] == "ёлка हिंदी"


def test_graphemes_hold_their_marks():
    assert graphemes("नमस्ते") == ["न", "म", "स्", "ते"]
    assert graphemes("\u0301a") == ["\u0301", "a"]  # a mark with nothing before it stands alone
    # Persian's zero-width non-joiner is spelling inside a word: it stays with its letter.
    assert training_characters("می\u200cخواهم")[0] == "می\u200cخواهم"


def test_latin_models_read_other_scripts_as_before():
    """A Latin vocabulary: accents fall back to their letters, marks it lacks on a known letter are left out (and
    reported), a letter it cannot spell takes its marks with it; English is unchanged."""
    vocab = Vocabulary.from_characters("abcdefghijklmnopqrstuvwxyz'")
    assert encode_transcript("Don’t stop—now!", vocab)[1:] == ("don't stopnow", ["—", "!"])
    ids, text, dropped = encode_transcript("q\u0303uo café наш", vocab)
    assert text == "quo cafe" and dropped == ["\u0303", "н", "а", "ш"]
    assert vocab.ids_to_text(ids) == "quo cafe"
    # Alignment: the unknown word is one star over its graphemes, the lacking mark is not a star of its own.
    words = plan_transcript("q\u0303uo наш", vocab)
    assert words[0].chars == ("q", "u", "o") and words[1].chars == ("наш",)


def test_a_vocabulary_with_marks_as_tokens_spells_composed_letters():
    """A model whose vocabulary was built from decomposed text (marks as their own tokens) still spells composed
    input: the composed letter falls back to its decomposition."""
    vocab = Vocabulary.from_characters(["e", "\u0302", "\u0301", "t", "h"])
    assert encode_transcript("thế", vocab)[1] == unicodedata.normalize("NFD", "thế")
    assert plan_transcript("thế", vocab)[0].chars == ("t", "h", "e", "\u0302", "\u0301")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_hindi_recording_encodes_fully(tmp_path):
    """A spoken Hindi utterance through the fine-tuning data path: its vocabulary and targets hold every letter,
    vowel sign and virama of the transcript, and the word LM and evaluation normalize it the same way."""
    from w2v2cli.lm import _sentences
    from w2v2cli.train.finetune import prepare

    text = "मैं हिंदी बोलता हूँ"
    wav = tmp_path / "hi.wav"
    subprocess.run(["espeak-ng", "-v", "hi", "-w", str(wav), text], check=True, capture_output=True)
    manifest = tmp_path / "train.jsonl"
    manifest.write_text(json.dumps({"audio": str(wav), "text": text}, ensure_ascii=False) + "\n")
    source = read_source(str(manifest), need_text=True)
    vocab, dropped = build_vocabulary(source.utterances)
    assert not dropped and {"\u0948", "\u0902", "\u093f", "\u0940", "\u094b", "\u0942", "\u0901"} <= set(vocab.tokens)
    from w2v2cli import preset

    kept, dropped = prepare(source, vocab, preset("tiny", vocab_size=len(vocab)), 10**7, lambda event: None)
    assert not dropped and vocab.ids_to_text(kept[0].targets) == unicodedata.normalize("NFC", text)
    assert list(_sentences([text], "lm.txt", vocab, {"lines": 0, "empty": 0})) == [text]


needs_uroman = pytest.mark.skipif(importlib.util.find_spec("uroman") is None,
                                  reason="needs uroman (pip install 'w2v2cli[romanize]')")


@needs_uroman
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_romanized_alignment_of_russian_with_a_latin_model(tmp_path):
    """Russian speech aligned by the embedded A-Z model through uroman: the result names the Cyrillic words as
    written, in order, with times that rise and stay inside the audio; the letters aligned are the romanized ones."""
    text = "Привет, как дела у тебя сегодня?"
    wav = tmp_path / "ru.wav"
    subprocess.run(["espeak-ng", "-v", "ru", "-w", str(wav), text], check=True, capture_output=True)
    proc = run_cli("align", wav, text, "--romanize", "--model", "embedded", "-q")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    words = result["words"]
    assert [w["word"] for w in words] == text.split() and result["text"] == text
    assert "".join(c["char"] for c in words[0]["chars"]) == "PRIVET"
    bounds = [t for w in words for t in (w["start"], w["end"])]
    assert bounds == sorted(bounds) and bounds[0] >= 0 and bounds[-1] <= result["duration"]
    assert all(w["end"] > w["start"] for w in words)
    # Without romanization an A-Z model cannot spell a Cyrillic letter: each word would be one wildcard.
    latin = Vocabulary.from_characters("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
    assert [w.chars for w in plan_transcript(text, latin)] == [(w.strip(",?").upper(),) for w in text.split()]


def test_romanize_without_uroman_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    from w2v2cli import romanize

    # A fresh cache over the same loader, with uroman made unimportable.
    monkeypatch.setattr(romanize, "_uroman", functools.cache(romanize._uroman.__wrapped__))
    monkeypatch.setitem(sys.modules, "uroman", None)
    proc = run_cli("align", tmp_path / "a.wav", "Привет", "--romanize", "--model", "embedded")
    assert proc.returncode != 0 and "pip install 'w2v2cli[romanize]'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_romanized_words_keep_their_text_and_follow_unknown():
    """Each word is spelled by its romanization and keeps its original text; what the romanization leaves that
    the model cannot spell (digits) follows --unknown, punctuation is not spoken."""
    spelled = {"Москва,": "Moskva,", "42": "42", "дом": "dom"}.get
    latin = Vocabulary.from_characters("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
    words = plan_transcript("Москва, 42 дом", latin, romanize=spelled)
    assert [w.text for w in words] == ["Москва,", "42", "дом"]
    assert [w.chars for w in words] == [tuple("MOSKVA"), ("42",), tuple("DOM")]
    assert [w.text for w in plan_transcript("Москва, 42 дом", latin, "skip", romanize=spelled)] == ["Москва,", "дом"]


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Co", "Cn")), max_size=40))
def test_any_text_round_trips_through_its_own_vocabulary(text):
    """Whatever the script: NFC and NFD input read the same, and a vocabulary built from a transcript spells it
    back exactly (targets decode to the normalized text, nothing beyond the reported characters is lost), in
    fine-tuning, evaluation and alignment alike."""
    kept, dropped = training_characters(text)
    assert training_characters(unicodedata.normalize("NFD", text)) == (kept, dropped)
    if not kept:
        return
    vocab = Vocabulary.from_characters(sorted(set(kept.replace(" ", ""))))
    ids, spelled, lost = encode_transcript(text, vocab)
    assert spelled == kept and vocab.ids_to_text(ids) == kept
    assert sorted(lost) == sorted(dropped)
    # Alignment spells each word with the same tokens.
    assert ["".join(w.chars) for w in plan_transcript(text, vocab, "skip")] == kept.split()
