"""The synthetic-en recipe's text stage: normalization, number words, verse splitting and the sentence splits. Needs
neither the Debian packages nor the speech engines."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "make_corpus.py"


def _load_recipe():
    spec = importlib.util.spec_from_file_location("synthetic_en_make_corpus", RECIPE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


mc = _load_recipe()


def spoken_words(text: str) -> list[str]:
    """The words of an engine text as a transcript spells them."""
    return re.sub(r"[^A-Za-z' ]", " ", text).upper().split()


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"), (42, "forty two"), (100, "one hundred"),
    (115, "one hundred fifteen"), (1000, "one thousand"), (2005, "two thousand five"),
    (25000, "twenty five thousand"), (4000000, "four million"), (1_000_001, "one million one"),
])
def test_number_words(n, words):
    assert mc.number_words(n) == words


@pytest.mark.parametrize("n, words", [
    (1, "first"), (2, "second"), (3, "third"), (5, "fifth"), (8, "eighth"), (9, "ninth"), (12, "twelfth"),
    (20, "twentieth"), (21, "twenty first"), (100, "one hundredth"), (103, "one hundred third"),
])
def test_ordinal_words(n, words):
    assert mc.ordinal_words(n) == words


@pytest.mark.parametrize("raw, transcript", [
    ("he played 18 holes", "HE PLAYED EIGHTEEN HOLES"),
    ("the judge set bail at $10,000", "THE JUDGE SET BAIL AT TEN THOUSAND DOLLARS"),
    ("the war ended in 1945", "THE WAR ENDED IN NINETEEN FORTY FIVE"),
    ("built in 1905 and sold in 2005", "BUILT IN NINETEEN OH FIVE AND SOLD IN TWO THOUSAND FIVE"),
    ("he celebrated his 10th season", "HE CELEBRATED HIS TENTH SEASON"),
    ("she came 21st in the race", "SHE CAME TWENTY FIRST IN THE RACE"),
    ("prices rose by 50% this year", "PRICES ROSE BY FIFTY PERCENT THIS YEAR"),
    ("Mr. Smith met Dr. Jones in St. Louis", "MISTER SMITH MET DOCTOR JONES IN SAINT LOUIS"),
    ("apples, pears, etc. were sold", "APPLES PEARS ET CETERA WERE SOLD"),
    ("a fruit, e.g. an apple", "A FRUIT FOR EXAMPLE AN APPLE"),
])
def test_numbers_and_abbreviations_spelled_out(raw, transcript):
    text, got = mc.normalize(raw)
    assert got == transcript
    assert spoken_words(text) == transcript.split()
    assert not re.search(r"\d|\$|%", text)


@pytest.mark.parametrize("raw, reason", [
    ("see http://example.com for more", "url"),
    ("write to me at someone at example dot com or www.example.org", "url"),
    ("The CIA unearthed a plot to kill the President", "acronym"),
    ("a joint venture to produce TV shows", "acronym"),
    ("a meeting of CEOs of large companies", "acronym"),
    ("the expansion of (a+b)^2 is long", "symbol"),
    ("Dun & Bradstreet is a mercantile agency", "symbol"),
    ("the probability of heads is 0.5 here", "number"),
    ("the late 1950's were quiet", "number"),
    ("The U.S. embargoes Libya", "abbreviation"),
    ("we close at 8 p.m. every night", "abbreviation"),
    ("the British call a tv set a telly", "unpronounceable"),
    ("sound the alarm", None),
    ("raised metalwork", "short"),
    (" ".join(["word"] * 31), "long"),
])
def test_rejected_sentences(raw, reason):
    if reason is None:
        assert mc.normalize(raw)[1] == "SOUND THE ALARM"
        return
    with pytest.raises(mc.Rejected) as info:
        mc.normalize(raw)
    assert info.value.reason == reason


def test_word_count_limits():
    assert len(mc.normalize(" ".join(["word"] * mc.MAX_WORDS))[1].split()) == mc.MAX_WORDS
    assert len(mc.normalize("one two three")[1].split()) == mc.MIN_WORDS
    # Numbers count as the words they are spoken as: 3 written words, 5 spoken.
    with pytest.raises(mc.Rejected, match="long"):
        mc.normalize(" ".join(["word"] * (mc.MAX_WORDS - 1)) + " 25")


@pytest.mark.parametrize("raw", [
    "`That's enough!,' he cut in harshly",
    "the students' papers were graded--finally",
    "When I am dead, my dearest, / Sing no sad songs for me",
    "indisputable (or sure) proof of it",
    "international law...only authorizes a belligerent to punish a spy",
    "I'll meet you at the café at 7 o'clock",
    "the well-known Mrs. O'Hara won 3 prizes",
])
def test_text_and_transcript_say_the_same_words(raw):
    text, transcript = mc.normalize(raw)
    assert spoken_words(text) == transcript.split()
    assert re.fullmatch(r"[A-Z' ]+", transcript)
    assert text[0].isupper() and text[-1] in ".!?"
    assert not re.search(r"[A-Z]{2,}", text.replace("I'", "i'"))  # mixed case: nothing for the engine to spell


def test_quotes_and_possessives():
    assert mc.normalize("the students' papers were graded")[1] == "THE STUDENTS' PAPERS WERE GRADED"
    assert mc.normalize("we are going to stage `Othello' tonight")[1] == "WE ARE GOING TO STAGE OTHELLO TONIGHT"
    assert mc.normalize("`honestly' is an intensifier, says the book")[1] == "HONESTLY IS AN INTENSIFIER SAYS THE BOOK"


def test_split_verse():
    verse = ("And God called the light Day, and the darkness he called Night. "
             "And the evening and the morning were the first day.")
    assert mc.split_verse(verse) == ["And God called the light Day, and the darkness he called Night.",
                                     "And the evening and the morning were the first day."]
    long_sentence = "; ".join(["and the men of the city went out to the field"] * 4) + "."
    pieces = mc.split_verse(long_sentence)
    assert len(pieces) > 1 and all(len(p.split()) <= mc.MAX_WORDS for p in pieces)
    assert " ".join(pieces).lower() == long_sentence.lower()


def test_kjv_small_capitals_are_words():
    text = "Ge2:4 These are the generations of the heavens when the LORD God made the earth.\n"
    assert mc.kjv_sentences(text) == ["These are the generations of the heavens when the Lord God made the earth."]


def test_build_sentences_dedups_and_splits_disjoint():
    raw = {"wordnet": [f"the dog saw {mc.number_words(i)} cats" for i in range(300)] + ["the dog saw one cat"] * 2,
           "kjv": ["The dog saw one cat.", "And the Lord spake unto Moses."],
           "grammar": mc.grammar_sentences(seed=1, count=200)}
    sentences, stats = mc.build_sentences(raw, seed=1)
    transcripts = [s["transcript"] for s in sentences]
    assert len(transcripts) == len(set(transcripts))
    assert stats["wordnet"]["dropped"]["duplicate"] == 1
    assert stats["kjv"]["dropped"]["duplicate"] == 1  # same words as a WordNet sentence: the first source keeps it
    by_split = {split: {s["transcript"] for s in sentences if s["split"] == split}
                for split in ("train", "dev", "test")}
    assert by_split["dev"] and by_split["test"] and by_split["train"]
    assert not (by_split["train"] & by_split["dev"] or by_split["train"] & by_split["test"]
                or by_split["dev"] & by_split["test"])
    # The split of a sentence depends on its transcript and the seed only.
    again, _ = mc.build_sentences({"grammar": raw["grammar"]}, seed=1)
    assert {s["transcript"]: s["split"] for s in again}.items() <= {s["transcript"]: s["split"]
                                                                     for s in sentences}.items()


def test_test_halves_split_by_engine():
    from types import SimpleNamespace

    def item(description):
        return SimpleNamespace(voice={"description": description})

    made = [(item("espeak-ng en-gb-x-rp+m5 speed 152 pitch 47"), 1.5), (item("flite slt stretch 1.06 f0 169"), 2.0),
            (item("espeak-ng en-gb-x-rp+f3 speed 170 pitch 40"), 3.0)]
    halves = mc.test_halves(made)
    assert [s for _, s in halves["test_espeak"]] == [1.5, 3.0]
    assert [s for _, s in halves["test_slt"]] == [2.0]
