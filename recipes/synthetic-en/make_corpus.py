"""A synthetic English speech corpus: sentences from Debian's text packages (WordNet's example sentences, the King
James Bible) and from a small grammar, spoken by the Debian text-to-speech engines espeak-ng and flite, with the
training split augmented by sox. Nothing is downloaded but two Debian packages.

Usage:
    python recipes/synthetic-en/make_corpus.py OUT [--hours 2] [--seed 1] [--jobs 2] [--text-only]

Needs espeak-ng, flite and sox (apt-get install espeak-ng flite sox), and apt-get and dpkg-deb for the text. Every
stage is cached under OUT and resumes when rerun:

    OUT/text/        the wordnet-base and bible-kjv-text .debs (`apt-get download`, unpacked with `dpkg-deb -x`,
                     never installed), the decompressed Bible, and sentences.jsonl: every kept sentence with the
                     mixed-case text the engines speak, its upper-case transcript, its source and its split
    OUT/clean/       training utterances as rendered: 16 kHz mono FLAC, peak at -3 dBFS
    OUT/train/       the same utterances augmented with sox (tempo or speed, white or pink noise, reverb, gain)
    OUT/dev/, test/  clean utterances of held-out sentences
    OUT/train.jsonl  `--hours` of augmented speech from the training voices
    OUT/train_clean.jsonl  the same utterances before augmentation (OUT/clean/)
    OUT/dev.jsonl    held-out sentences, training voices (5% of the training hours, at least 200 utterances)
    OUT/test.jsonl   held-out sentences, held-out voices: flite's slt and one espeak-ng accent with variants
                     that training never uses (as many hours as dev)
    OUT/test_espeak.jsonl, OUT/test_slt.jsonl: test's two halves, the held-out espeak-ng voices and flite's slt
    OUT/stats.json   text statistics, render and augmentation speeds, hours per split

A manifest record holds id, audio (relative to OUT), text (the transcript), speaker, duration (seconds), voice
(the generator and its settings), source ("wordnet", "kjv" or "grammar") and augment (the sox effects of a
training file, null in dev and test). Audio files are named after a hash of what made them (sentence, voice,
effects): a rerun renders only what is new or changed, and deletes the files of sentences, voices or effects that
are no longer planned.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
MIN_WORDS, MAX_WORDS = 3, 30
DEV_FRACTION = TEST_FRACTION = 0.03  # of the unique sentences, assigned by a seeded hash of the transcript
GRAMMAR_SENTENCES = 10000
EVAL_FRACTION, EVAL_MIN_UTTERANCES = 0.05, 200  # dev and test size, relative to the training hours

# ---------------------------------------------------------------------------------------------------------------
# The grammar: varied, grammatical sentences over about 700 common words.

NAMES = ["anna", "ben", "clara", "david", "emma", "frank", "grace", "henry", "iris", "jack", "kate", "leo", "maria", "nora", "oscar", "paul", "rosa", "sam", "tina", "victor", "walter", "alice", "brian", "carol", "diana", "ethan", "fiona", "george", "hannah", "ivan", "julia", "kevin", "laura", "martin", "nina"]
NOUNS = ["man", "woman", "child", "teacher", "doctor", "farmer", "driver", "student", "friend", "neighbor", "mother", "father", "sister", "brother", "king", "queen", "soldier", "artist", "writer", "singer", "baker", "captain", "pilot", "nurse", "lawyer", "worker", "stranger", "family", "house", "garden", "river", "mountain", "forest", "city", "village", "road", "bridge", "window", "door", "table", "chair", "book", "letter", "paper", "picture", "song", "story", "voice", "music", "market", "school", "office", "station", "train", "plane", "ship", "boat", "car", "horse", "dog", "cat", "bird", "fish", "tree", "flower", "stone", "field", "island", "ocean", "lake", "sky", "sun", "moon", "star", "cloud", "rain", "snow", "wind", "morning", "evening", "night", "day", "week", "year", "summer", "winter", "spring", "autumn", "hour", "minute", "moment", "water", "bread", "coffee", "tea", "milk", "apple", "orange", "sugar", "salt", "money", "ticket", "key", "box", "bag", "coat", "hat", "shoe", "glass", "cup", "plate", "bottle", "kitchen", "room", "floor", "wall", "corner", "street", "park", "church", "hospital", "library", "museum", "theater", "factory", "farm", "shop", "bank", "hotel", "restaurant", "beach", "hill", "valley", "desert", "field", "problem", "question", "answer", "idea", "plan", "reason", "result", "answer", "game", "team", "match", "price", "truth", "secret", "language", "word", "name", "number", "color", "light", "fire", "machine", "computer", "phone", "camera", "radio", "engine", "wheel", "clock", "map", "lamp", "candle", "blanket", "pillow", "basket", "bucket", "ladder", "hammer", "needle", "thread", "rope", "knife", "fork", "spoon", "oven", "mirror"]
VERBS = ["saw", "found", "took", "gave", "made", "wanted", "needed", "liked", "opened", "closed", "carried", "brought", "bought", "sold", "painted", "cleaned", "watched", "helped", "called", "visited", "followed", "remembered", "forgot", "answered", "asked", "explained", "described", "moved", "pushed", "pulled", "lifted", "dropped", "washed", "fixed", "built", "broke", "lost", "kept", "held", "showed", "told", "wrote", "read", "heard", "noticed", "counted", "checked", "changed", "chose", "borrowed", "ordered", "packed", "filled", "emptied", "covered", "collected", "measured", "studied", "reached", "left"]
INTRANSITIVE = ["smiled", "laughed", "waited", "walked", "slept", "arrived", "returned", "worked", "listened", "stopped", "started", "danced", "shouted", "whispered", "sang", "cried", "jumped", "rested", "stayed", "travelled", "disappeared", "agreed", "hurried", "continued", "paused", "wondered"]
ADJECTIVES = ["old", "young", "small", "large", "tall", "short", "long", "quiet", "loud", "bright", "dark", "warm", "cold", "heavy", "light", "empty", "full", "clean", "dirty", "busy", "lazy", "happy", "sad", "kind", "angry", "brave", "calm", "careful", "clever", "famous", "strange", "simple", "beautiful", "ugly", "rich", "poor", "fresh", "green", "red", "blue", "yellow", "white", "black", "brown", "golden", "silver", "wooden", "narrow", "wide", "deep", "sharp", "soft", "hard", "sweet", "bitter", "early", "late", "ancient", "modern", "gentle", "wild"]
ADVERBS = ["slowly", "quickly", "quietly", "carefully", "suddenly", "happily", "sadly", "gently", "loudly", "finally", "often", "never", "always", "again", "together", "alone", "early", "late", "soon", "today", "yesterday", "tomorrow"]
PLACES = ["in the garden", "at the station", "near the river", "on the bridge", "behind the house", "under the tree", "across the street", "inside the museum", "by the window", "at the market", "in the kitchen", "on the hill", "through the forest", "along the beach", "outside the school", "in the village", "at the hospital", "on the island"]
TIMES = ["in the morning", "at night", "after dinner", "before noon", "every day", "last week", "next summer", "on monday", "on friday", "at midnight", "during the storm", "after the game", "before the rain", "in the spring"]
DETERMINERS = ("the", "a", "this", "that", "every", "her", "his", "our", "their", "my", "your", "one")
NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twenty"]
PROPER = set(NAMES) | {"monday", "friday"}


def noun_phrase(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return rng.choice(NAMES)
    if rng.random() < 0.12:
        return f"{rng.choice(NUMBERS)} {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}s"
    det = rng.choice(DETERMINERS)
    adjective = f"{rng.choice(ADJECTIVES)} " if rng.random() < 0.5 else ""
    noun = f"{adjective}{rng.choice(NOUNS)}"
    if det == "a" and noun[0] in "aeiou":
        det = "an"
    return f"{det} {noun}"


def sentence(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.45:
        words = [noun_phrase(rng), rng.choice(VERBS), noun_phrase(rng)]
    elif kind < 0.7:
        words = [noun_phrase(rng), rng.choice(INTRANSITIVE)]
    elif kind < 0.85:
        words = [noun_phrase(rng), "was", rng.choice(ADJECTIVES)]
    else:
        words = [noun_phrase(rng), rng.choice(VERBS), noun_phrase(rng), "and", rng.choice(INTRANSITIVE)]
    if rng.random() < 0.35:
        words.append(rng.choice(ADVERBS))
    if rng.random() < 0.4:
        words.append(rng.choice(PLACES))
    if rng.random() < 0.25:
        words.append(rng.choice(TIMES))
    return " ".join(words)


def grammar_sentences(seed: int, count: int) -> list[str]:
    """`count` distinct grammar sentences, names and weekdays capitalized as the engines expect them."""
    rng = random.Random(f"{seed}:grammar")
    seen: dict[str, None] = {}
    while len(seen) < count:
        seen[" ".join(w.capitalize() if w in PROPER else w for w in sentence(rng).split())] = None
    return list(seen)


# ---------------------------------------------------------------------------------------------------------------
# Text normalization: raw sentence -> (mixed-case text for the engines, upper-case transcript), the same words.

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}
ABBREVIATIONS = {"Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Dr": "Doctor", "St": "Saint", "Mt": "Mount",
                 "Jr": "Junior", "Sr": "Senior", "Prof": "Professor", "Gen": "General", "Col": "Colonel",
                 "Capt": "Captain", "Lt": "Lieutenant", "Sgt": "Sergeant", "Gov": "Governor", "Rev": "Reverend",
                 "Sen": "Senator", "Ave": "Avenue", "Co": "Company", "Corp": "Corporation", "Inc": "Incorporated",
                 "Ltd": "Limited", "Bros": "Brothers", "vs": "versus", "etc": "et cetera", "approx": "approximately",
                 "e.g": "for example", "i.e": "that is"}
ABBREVIATION_RE = re.compile(r"\b(" + "|".join(re.escape(a) for a in ABBREVIATIONS) + r")\.")
URL_RE = re.compile(r"https?:|www\.|@|\.(com|org|net|edu|gov)\b", re.IGNORECASE)
TOKEN_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?:st|nd|rd|th)?|[A-Za-z0-9']+|[.,;:!?]")
VOWEL_RE = re.compile(r"[aeiouyAEIOUY]")


class Rejected(ValueError):
    """A sentence the corpus does not use; `reason` is one word, counted in the statistics."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def number_words(n: int) -> str:
    """Cardinal in words: 1234 -> "one thousand two hundred thirty four" (no "and", no hyphens)."""
    if n < 0 or n >= 10**12:
        raise Rejected("number")
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + (f" {ONES[n % 10]}" if n % 10 else "")
    if n < 1000:
        return f"{ONES[n // 100]} hundred" + (f" {number_words(n % 100)}" if n % 100 else "")
    for scale, name in SCALES:
        if n >= scale:
            return f"{number_words(n // scale)} {name}" + (f" {number_words(n % scale)}" if n % scale else "")
    raise AssertionError(n)


def ordinal_words(n: int) -> str:
    """21 -> "twenty first", 100 -> "one hundredth"."""
    *head, last = number_words(n).split()
    if last in ORDINALS:
        last = ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def year_words(n: int) -> str:
    """How a year between 1100 and 1999 is read: 1947 -> "nineteen forty seven", 1905 -> "nineteen oh five"."""
    century, rest = divmod(n, 100)
    if rest == 0:
        return f"{number_words(century)} hundred"
    return f"{number_words(century)} {'oh ' if rest < 10 else ''}{number_words(rest)}"


def _number_token(token: str) -> str:
    match = re.fullmatch(r"(\d[\d,]*?)(st|nd|rd|th)?", token)
    if match is None or (len(match[1]) > 1 and match[1][0] == "0"):
        raise Rejected("number")
    digits, suffix = match[1], match[2]
    if "," in digits and not re.fullmatch(r"\d{1,3}(,\d{3})+", digits):
        raise Rejected("number")
    n = int(digits.replace(",", ""))
    if suffix:
        expected = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        if suffix != expected:
            raise Rejected("number")
        return ordinal_words(n)
    if len(digits) == 4 and 1100 <= n <= 1999:
        return year_words(n)
    return number_words(n)


def _expand_symbols(text: str) -> str:
    """Money, percentages and the abbreviations in ABBREVIATIONS as words; dashes, ellipses and brackets as commas."""
    amount = r"(\d{1,3}(?:,\d{3})+|\d+)(?![.,]?\d)"  # no cents, no decimals: those have no single reading
    text = re.sub(r"\$" + amount, lambda m: m[1] + (" dollar" if m[1] == "1" else " dollars"), text)
    text = re.sub(amount + " ?%", r"\1 percent", text)
    text = ABBREVIATION_RE.sub(lambda m: ABBREVIATIONS[m[1]], text)
    text = re.sub(r"\.{2,}|\u2026|--+| / ", ", ", text)
    return re.sub(r"[()\[\]{}]", ", ", text)


def normalize(raw: str) -> tuple[str, str]:
    """(text for the engines, transcript) of one raw sentence, or Rejected with the reason.

    The text keeps the sentence's case and punctuation (the engines use both for prosody) with numbers and
    abbreviations already written as words, so that what is spoken is exactly the transcript: its words upper-cased,
    letters and apostrophes only. Rejected: URLs, acronyms (two capitals in a row: CIA, CEOs; the engines spell
    them or read them as a word), words without a vowel (spelled too: "nth", "km"), symbols and numbers that have no
    single reading, fewer than MIN_WORDS or more than MAX_WORDS words.
    """
    text = "".join(c for c in unicodedata.normalize("NFKD", raw) if not unicodedata.combining(c))
    if URL_RE.search(text):
        raise Rejected("url")
    quoted = "`" in text  # WordNet quotes `like this'; a closing quote is then no plural possessive
    text = _expand_symbols(text.replace("`", "").replace('"', ""))
    if re.search(r"\b[A-Za-z]\.[A-Za-z]\.", text) or re.search(r"\. +[a-z]", text):
        raise Rejected("abbreviation")  # U.S., a.m., or a period inside a sentence that is no sentence end
    if re.search(r"\d[.:]\d", text):
        raise Rejected("number")  # decimals and times of day
    if re.search(r"[^A-Za-z0-9 ,.;:!?'-]", text):
        raise Rejected("symbol")
    words: list[str] = []
    pieces: list[str] = []  # words and punctuation of the engine text
    for token in TOKEN_RE.findall(text.replace("-", " ")):
        if token in ".,;:!?":
            if pieces and pieces[-1] in ".,;:!?":
                if token in ".!?":
                    pieces[-1] = token
            elif pieces:
                pieces.append(token)
            continue
        token = token.lstrip("'")
        if token.endswith("'") and (quoted or token[-2:-1] not in ("s", "S")):
            token = token.rstrip("'")
        if not token.strip("'"):
            continue
        if any(c.isdigit() for c in token):
            if not token[0].isdigit():
                raise Rejected("number")  # letters and digits in one word: model numbers, QE2
            spoken = _number_token(token).split()
        else:
            letters = token.replace("'", "")
            if (len(letters) >= 2 and letters.isupper()) or re.search(r"[A-Z]{2}", token):  # ABC, ABCs
                raise Rejected("acronym")
            if not VOWEL_RE.search(letters):
                raise Rejected("unpronounceable")
            spoken = [token]
        words += spoken
        pieces += spoken
    if len(words) < MIN_WORDS:
        raise Rejected("short")
    if len(words) > MAX_WORDS:
        raise Rejected("long")
    if pieces[-1] in ",;:":
        pieces[-1] = "."
    elif pieces[-1] not in ".!?":
        pieces.append(".")
    engine_text = re.sub(r" ([.,;:!?])", r"\1", " ".join(pieces))
    return engine_text[0].upper() + engine_text[1:], " ".join(w.upper() for w in words)


def split_verse(verse: str) -> list[str]:
    """A Bible verse as sentences; a sentence over MAX_WORDS words is cut after its colons and semicolons, the
    clauses joined again greedily up to MAX_WORDS words."""
    out = []
    for sentence_ in re.split(r"(?<=[.?!])\s+(?=[A-Z])", verse.strip()):
        if len(sentence_.split()) <= MAX_WORDS:
            out.append(sentence_)
            continue
        chunk: list[str] = []
        for clause in re.split(r"(?<=[;:])\s+", sentence_):
            if chunk and len(" ".join(chunk + [clause]).split()) > MAX_WORDS:
                out.append(" ".join(chunk))
                chunk = []
            chunk.append(clause)
        out.append(" ".join(chunk))
    return [s[0].upper() + s[1:] for s in out if s]


def assign_split(transcript: str, seed: int) -> str:
    """dev, test or train by a seeded hash of the transcript: stable when other sentences come or go."""
    digest = hashlib.sha1(f"{seed}:{transcript}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "dev" if u < DEV_FRACTION else "test" if u < DEV_FRACTION + TEST_FRACTION else "train"


def build_sentences(raw_by_source: dict[str, list[str]], seed: int) -> tuple[list[dict], dict]:
    """Normalize, deduplicate (by transcript, first source wins) and split. Returns the sentences as
    {"text", "transcript", "source", "split"} and statistics per source."""
    sentences: list[dict] = []
    seen: set[str] = set()
    stats: dict = {}
    for source, raws in raw_by_source.items():
        dropped: collections.Counter = collections.Counter()
        kept: list[dict] = []
        for raw in raws:
            try:
                text, transcript = normalize(raw)
            except Rejected as exc:
                dropped[exc.reason] += 1
                continue
            if transcript in seen:
                dropped["duplicate"] += 1
                continue
            seen.add(transcript)
            kept.append({"text": text, "transcript": transcript, "source": source,
                         "split": assign_split(transcript, seed)})
        num_words = [len(s["transcript"].split()) for s in kept]
        stats[source] = {"raw": len(raws), "kept": len(kept), "dropped": dict(dropped.most_common()),
                         "mean_words": round(float(np.mean(num_words)), 1) if kept else 0,
                         "splits": dict(collections.Counter(s["split"] for s in kept))}
        sentences += kept
    return sentences, stats


# ---------------------------------------------------------------------------------------------------------------
# Text sources: Debian packages fetched with apt-get download and unpacked with dpkg-deb -x.

def unpack_package(package: str, text_dir: Path) -> Path:
    """The unpacked tree of a Debian package, downloaded and unpacked once into `text_dir`."""
    root = text_dir / "pkg" / package
    if root.is_dir():
        return root
    debs = text_dir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{package}_*.deb")):
        print(f"apt-get download {package}", file=sys.stderr)
        fetched = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True, text=True)
        if fetched.returncode != 0:
            sys.exit(f"make_corpus: apt-get download {package} failed: {fetched.stderr.strip()}")
    partial = root.with_name(package + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(next(debs.glob(f"{package}_*.deb"))), str(partial)], check=True)
    partial.rename(root)
    return root


def wordnet_examples(root: Path) -> list[str]:
    """The quoted example sentences in the glosses of WordNet's data files (`| gloss; "an example"`)."""
    out: list[str] = []
    for part in ("noun", "verb", "adj", "adv"):
        for line in (root / "usr/share/wordnet" / f"data.{part}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or " | " not in line:  # the license header is indented
                continue
            out += re.findall(r'"([^"]*)"', line.split(" | ", 1)[1])
    return out


def kjv_text(root: Path, text_dir: Path) -> str:
    """The King James Bible as text, one verse a line ("Ge1:1 In the beginning ..."), decompressed once.

    bible.data is the bible-kjv reader's format: a title, at 0x54 the block size and block count (big-endian u32)
    and count + 1 block offsets; every block is a Unix `compress` (LZW) stream without the 3-byte header, which is
    stored once before the first block. gzip decompresses such streams.
    """
    cached = text_dir / "kjv.txt"
    if cached.is_file():
        return cached.read_text()
    data = (root / "usr/lib/bible.data").read_bytes()
    (count,) = struct.unpack(">I", data[0x58:0x5C])
    offsets = struct.unpack(f">{count + 1}I", data[0x5C:0x5C + 4 * (count + 1)])
    header = data[offsets[0] - 3:offsets[0]]
    if header[:2] != b"\x1f\x9d":
        raise SystemExit(f"make_corpus: {root}/usr/lib/bible.data: unknown format")
    blocks = [subprocess.run(["gzip", "-dc"], input=header + data[start:end], check=True,
                             capture_output=True).stdout for start, end in itertools.pairwise(offsets)]
    text = b"".join(blocks).decode("ascii")
    _write_atomic(cached, text)
    return text


def kjv_sentences(text: str) -> list[str]:
    """Sentences of the Bible's verses. Its small capitals (LORD, GOD, MENE, TEKEL) are printed as capitals; they are
    ordinary words, so they are written in title case instead of being dropped as acronyms."""
    out = []
    for line in text.splitlines():
        match = re.fullmatch(r"[1-3]?[A-Za-z]+\d+:\d+ (.*)", line)
        if match:
            verse = re.sub(r"\b[A-Z][A-Z']+\b", lambda m: m[0].capitalize(), match[1])
            out += split_verse(verse)
    return out


def build_text(out: Path, seed: int) -> tuple[list[dict], dict]:
    text_dir = out / "text"
    raw = {"wordnet": wordnet_examples(unpack_package("wordnet-base", text_dir)),
           "kjv": kjv_sentences(kjv_text(unpack_package("bible-kjv-text", text_dir), text_dir)),
           "grammar": grammar_sentences(seed, GRAMMAR_SENTENCES)}
    sentences, stats = build_sentences(raw, seed)
    _write_atomic(text_dir / "sentences.jsonl", "".join(json.dumps(s) + "\n" for s in sentences))
    return sentences, stats


# ---------------------------------------------------------------------------------------------------------------
# Voices.

ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-us-nyc")
HELD_OUT_ACCENT = "en-gb-x-rp"  # with HELD_OUT_VARIANTS: the espeak-ng voices of the test set only
HELD_OUT_VARIANTS = ("f3", "m5", "klatt3", "Andrea", "david", "iven2")
UNUSABLE_VARIANTS = ("whisper", "whisperf", "fast")  # whispered speech has no voicing; `fast` is a test variant
FLITE_TRAIN = ("kal16", "awb", "rms")  # kal is 8 kHz; slt is held out
FLITE_TEST = "slt"
FLITE_F0 = {"kal16": 88, "awb": 131, "slt": 170}  # measured default mean F0 (Hz); rms ignores int_f0_target_mean
FLITE_SHARE = 0.25  # of the training utterances: 3 flite voices against about 600 espeak-ng ones


def espeak_variants() -> list[str]:
    """The variant names `voice+variant` accepts (file names under voices/!v), sorted."""
    listing = subprocess.run(["espeak-ng", "--voices=variant"], check=True, capture_output=True, text=True).stdout
    names = {line.split()[4].removeprefix("!v/") for line in listing.splitlines()[1:] if len(line.split()) == 5}
    return sorted(names - set(UNUSABLE_VARIANTS), key=str.lower)


def pick_voice(rng: random.Random, held_out: bool, train_variants: list[str]) -> dict:
    """A voice for one utterance: engine, name, speaker (the voice without its prosody) and settings."""
    if held_out and rng.random() < 0.5:
        name = FLITE_TEST
    elif not held_out and rng.random() < FLITE_SHARE:
        name = rng.choice(FLITE_TRAIN)
    else:
        if held_out:
            name = f"{HELD_OUT_ACCENT}+{rng.choice(HELD_OUT_VARIANTS)}"
        else:
            accent = rng.choice([a for a in ACCENTS if a != HELD_OUT_ACCENT])
            name = f"{accent}+{rng.choice(train_variants)}"
        speed, pitch = rng.randint(130, 210), rng.randint(30, 70)
        return {"engine": "espeak-ng", "name": name, "speaker": name, "speed": speed, "pitch": pitch,
                "description": f"espeak-ng {name} speed {speed} pitch {pitch}"}
    stretch = round(rng.uniform(0.85, 1.25), 2)  # the spread of 130-210 words a minute around espeak-ng's 170
    f0 = round(FLITE_F0[name] * rng.uniform(0.85, 1.15)) if name in FLITE_F0 else None
    return {"engine": "flite", "name": name, "speaker": f"flite-{name}", "stretch": stretch, "f0": f0,
            "description": f"flite {name} stretch {stretch}" + (f" f0 {f0}" if f0 else "")}


def pick_augment(rng: random.Random) -> dict:
    """Random sox effects for one training file; each is applied with its own probability, gain always."""
    aug: dict = {}
    if rng.random() < 0.6:
        aug["tempo"] = (rng.choice(("tempo", "speed")), round(rng.uniform(0.9, 1.1), 3))
    if rng.random() < 0.5:
        aug["noise"] = (rng.choice(("white", "pink")), round(rng.uniform(5, 30), 1))
    if rng.random() < 0.3:
        aug["reverb"] = (rng.randint(10, 40), rng.randint(20, 60))  # reverberance %, room scale %: a small room
    aug["gain"] = round(rng.uniform(-15, -1), 1)  # peak level in dBFS
    return aug


def describe_augment(aug: dict) -> str:
    parts = []
    if "tempo" in aug:
        parts.append(f"{aug['tempo'][0]} {aug['tempo'][1]}")
    if "noise" in aug:
        parts.append(f"{aug['noise'][0]} {aug['noise'][1]} dB")
    if "reverb" in aug:
        parts.append(f"reverb {aug['reverb'][0]}")
    parts.append(f"gain {aug['gain']}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# Rendering and augmentation, one utterance at a time; every file is written under a temporary name, then renamed.

@dataclass(frozen=True)
class Item:
    """One planned utterance."""

    split: str
    index: int
    sentence: dict
    voice: dict
    augment: dict | None  # sox effects, training files only

    def clean_path(self, out: Path) -> Path:
        folder = "clean" if self.augment is not None else self.split
        return out / folder / f"{_digest(self.sentence['text'], self.voice['description'])}.flac"

    def path(self, out: Path) -> Path:
        if self.augment is None:
            return self.clean_path(out)
        clean = self.clean_path(out).stem
        return out / self.split / f"{_digest(clean, describe_augment(self.augment))}.flac"

    def estimate_s(self) -> float:
        """Rough duration, to size the batches before anything is rendered; calibrated on what is."""
        words = len(self.sentence["transcript"].split())
        pace = 170 / self.voice["speed"] if "speed" in self.voice else self.voice["stretch"]
        tempo = self.augment["tempo"][1] if self.augment and "tempo" in self.augment else 1.0
        return (0.4 + 0.33 * words * pace) / tempo


def _digest(*parts: str) -> str:
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:8]


def _partial(path: Path) -> Path:
    return path.with_name(path.stem + ".part" + path.suffix)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(path)
    partial.write_text(text)
    os.replace(partial, path)


class Meter:
    """Audio seconds made and seconds spent per (stage, engine), added to from the worker threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.totals: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])

    def add(self, stage: str, engine: str, audio_s: float, busy_s: float) -> None:
        with self.lock:
            total = self.totals[stage, engine]
            total[0] += audio_s
            total[1] += busy_s
            total[2] += 1

    def report(self) -> dict:
        return {f"{stage} {engine}": {"files": n, "audio_h": round(a / 3600, 3), "busy_s": round(b, 1),
                                      "x_real_time": round(a / b, 1) if b else None}
                for (stage, engine), (a, b, n) in sorted(self.totals.items())}


def synthesize(text: str, voice: dict, path: Path) -> None:
    """Speak `text` into a 16 kHz mono FLAC at -3 dBFS peak (the voices' levels differ by up to 18 dB)."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        if voice["engine"] == "espeak-ng":
            # Amplitude 30 of 200: at espeak-ng's default of 100 the loudest variants clip.
            cmd = ["espeak-ng", "-v", voice["name"], "-s", str(voice["speed"]), "-p", str(voice["pitch"]),
                   "-a", "30", "-w", str(raw), "--stdin"]
            subprocess.run(cmd, input=text, text=True, check=True, capture_output=True)
        else:
            cmd = ["flite", "-voice", voice["name"], "-t", text, "-o", str(raw),
                   "--setf", f"duration_stretch={voice['stretch']}"]
            if voice["f0"]:
                cmd += ["--setf", f"int_f0_target_mean={voice['f0']}"]
            subprocess.run(cmd, check=True, capture_output=True)
        partial = _partial(path)
        subprocess.run(["sox", str(raw), "-b", "16", "-c", "1", str(partial), "rate", "-v", str(SAMPLE_RATE),
                        "gain", "-n", "-3"], check=True, capture_output=True)
    os.replace(partial, path)


def noise_levels() -> dict[str, float]:
    """RMS of sox's `synth whitenoise` and `pinknoise` at their default amplitude, to set an SNR."""
    levels = {}
    for kind in ("white", "pink"):
        out = subprocess.run(["sox", "-n", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-t", "raw", "-",
                              "synth", "20", f"{kind}noise"], check=True, capture_output=True).stdout
        samples = np.frombuffer(out, dtype="<i2").astype(np.float64) / 32768
        levels[kind] = float(np.sqrt(np.mean(samples**2)))
    return levels


def augment(clean: Path, aug: dict, path: Path, noise_rms: dict[str, float]) -> None:
    """Apply `aug` to `clean` with one sox command: noise mixed in with -m at the SNR against the clean signal's RMS,
    then tempo or speed, reverb, and the gain as a peak level."""
    headroom = 0.5  # the clean file peaks at -3 dBFS: halve it so that speech plus noise cannot clip in the mix
    cmd = ["sox"]
    if "noise" in aug:
        kind, snr_db = aug["noise"]
        signal, _ = sf.read(str(clean), dtype="float64")
        signal_rms = float(np.sqrt(np.mean(signal**2)))
        volume = headroom * signal_rms / 10 ** (snr_db / 20) / noise_rms[kind]
        noise = (f"|sox -n -r {SAMPLE_RATE} -c 1 -b 16 -p synth {len(signal) / SAMPLE_RATE:.4f} {kind}noise")
        cmd += ["-m", "-v", str(headroom), str(clean), "-v", f"{volume:.6g}", noise]
    else:
        cmd += [str(clean)]
    partial = _partial(path)
    cmd += ["-b", "16", str(partial)]
    if "tempo" in aug:
        effect, factor = aug["tempo"]
        # tempo keeps the pitch (-s: tuned for speech); speed shifts it, like a tape played faster.
        cmd += ["tempo", "-s", str(factor)] if effect == "tempo" else ["speed", str(factor), "rate", str(SAMPLE_RATE)]
    if "reverb" in aug:
        cmd += ["reverb", str(aug["reverb"][0]), "50", str(aug["reverb"][1])]
    cmd += ["gain", "-n", str(aug["gain"])]
    subprocess.run(cmd, check=True, capture_output=True)
    os.replace(partial, path)


def make(item: Item, out: Path, noise_rms: dict[str, float], meter: Meter) -> float | None:
    """Render (and augment) one utterance unless its file exists; returns the file's duration, or None when an
    engine failed (reported, and the utterance left out)."""
    clean, final = item.clean_path(out), item.path(out)
    engine = item.voice["engine"]
    try:
        if not final.is_file() and not clean.is_file():
            start = time.perf_counter()
            synthesize(item.sentence["text"], item.voice, clean)
            meter.add("render", engine, sf.info(str(clean)).duration, time.perf_counter() - start)
        if item.augment is not None and not final.is_file():
            start = time.perf_counter()
            augment(clean, item.augment, final, noise_rms)
            meter.add("augment", "sox", sf.info(str(final)).duration, time.perf_counter() - start)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        print(f"{item.split}-{item.index:06d}: {exc.cmd[0]} failed ({detail[-1] if detail else exc.returncode}): "
              f"{item.voice['description']}: {item.sentence['text']!r}", file=sys.stderr)
        return None
    return sf.info(str(final)).duration


def plan(split: str, sentences: list[dict], seed: int, train_variants: list[str]) -> list[Item]:
    """Every sentence of `split` in a seeded order, each with its voice (and augmentation for training).

    Order, voice and effects of a sentence depend on its transcript and the seed alone, not on the other sentences,
    so a change of the text rules re-renders only the sentences it changes."""
    pool = sorted((s for s in sentences if s["split"] == split),
                  key=lambda s: _digest(f"{seed}:{split}:order", s["transcript"]))
    items = []
    for index, sentence_ in enumerate(pool):
        rng = random.Random(f"{seed}:{split}:{sentence_['transcript']}")
        voice = pick_voice(rng, split == "test", train_variants)
        items.append(Item(split, index, sentence_, voice, pick_augment(rng) if split == "train" else None))
    return items


def render_split(items: list[Item], target_s: float, min_count: int, out: Path, pool: cf.Executor,
                 noise_rms: dict[str, float], meter: Meter) -> tuple[list[tuple[Item, float]], list[Item]]:
    """The shortest prefix of `items` with `target_s` seconds and `min_count` utterances, rendered in batches
    sized by the calibrated duration estimate; the prefix depends only on the items, so a rerun ends where this run
    did. Returns (item, seconds) of the prefix's utterances, and every item rendered, the prefix's and the last
    batch's overshoot (whose files stay in the cache)."""
    done: list[tuple[Item, float]] = []
    cursor = 0  # items[:cursor] are rendered, or failed
    while True:
        total = 0.0
        for count, (_, seconds) in enumerate(done, 1):
            total += seconds
            if total >= target_s and count >= min_count:
                return done[:count], items[:cursor]
        if cursor == len(items):
            print(f"warning: out of sentences at {total / 3600:.2f} h", file=sys.stderr)
            return done, items
        estimated = sum(item.estimate_s() for item, _ in done)
        calibration = total / estimated if done else 1.0
        need = target_s - total
        batch: list[Item] = []
        for item in items[cursor:]:
            if len(batch) >= 16 and need <= 0 and len(done) + len(batch) >= min_count:
                break
            batch.append(item)
            need -= item.estimate_s() * calibration
        cursor += len(batch)
        started = time.perf_counter()
        for n, (item, seconds) in enumerate(zip(batch, pool.map(lambda it: make(it, out, noise_rms, meter), batch)), 1):
            if seconds is not None:
                done.append((item, seconds))
            if n % 1000 == 0 or n == len(batch):
                hours = sum(d for _, d in done) / 3600
                print(f"{item.split}: {len(done)} utterances, {hours:.2f} h "
                      f"({time.perf_counter() - started:.0f} s this batch)", file=sys.stderr)


def remove_stale(out: Path, made: list[Item]) -> int:
    """Delete the audio files this run neither made nor used: partial files, and files of sentences, voices or effects
    that have changed (or of utterances beyond a smaller --hours)."""
    keep = {item.path(out) for item in made} | {item.clean_path(out) for item in made}
    removed = 0
    for folder in {path.parent for path in keep}:
        for path in folder.glob("*.flac"):
            if path not in keep:
                path.unlink()
                removed += 1
    return removed


def write_manifest(path: Path, out: Path, made: list[tuple[Item, float]], clean: bool = False) -> None:
    """A split's manifest; `clean`: its utterances as rendered, before augmentation (OUT/clean/), with their own
    durations (tempo and speed change them)."""
    records = [{"id": f"{item.split}-{item.index:06d}",
                "audio": (item.clean_path(out) if clean else item.path(out)).relative_to(out).as_posix(),
                "text": item.sentence["transcript"], "speaker": item.voice["speaker"],
                "duration": round(sf.info(str(item.clean_path(out))).duration if clean else seconds, 4),
                "voice": item.voice["description"], "source": item.sentence["source"],
                "augment": describe_augment(item.augment) if item.augment is not None and not clean else None}
               for item, seconds in made]
    _write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def test_halves(made: list[tuple[Item, float]]) -> dict[str, list[tuple[Item, float]]]:
    """The test split by engine: test_espeak (the held-out espeak-ng voices, the WER target's set) and test_slt."""
    engine = {"test_espeak": "espeak-ng", "test_slt": "flite"}
    return {half: [(item, s) for item, s in made if item.voice["description"].split()[0] == name]
            for half, name in engine.items()}


def print_text_stats(stats: dict) -> None:
    for source, s in stats.items():
        dropped = ", ".join(f"{k} {v}" for k, v in s["dropped"].items()) or "none"
        splits = ", ".join(f"{k} {v}" for k, v in sorted(s["splits"].items()))
        print(f"{source}: {s['raw']} raw, {s['kept']} kept ({splits}), {s['mean_words']} words on average; "
              f"dropped: {dropped}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--hours", type=float, default=2.0, help="training speech to generate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="utterances rendered in parallel")
    parser.add_argument("--text-only", action="store_true", help="build the sentences, print their statistics, stop")
    args = parser.parse_args()
    tools = ("apt-get", "dpkg-deb", "gzip") + (() if args.text_only else ("espeak-ng", "flite", "sox"))
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        sys.exit(f"make_corpus: needs {', '.join(missing)}: apt-get install espeak-ng flite sox")

    started = time.perf_counter()
    sentences, text_stats = build_text(args.out, args.seed)
    print_text_stats(text_stats)
    if args.text_only:
        return

    variants = espeak_variants()
    train_variants = [v for v in variants if v not in HELD_OUT_VARIANTS]
    meter = Meter()
    noise_rms = noise_levels()
    eval_s = EVAL_FRACTION * args.hours * 3600
    targets = {"train": (args.hours * 3600, 1), "dev": (eval_s, EVAL_MIN_UTTERANCES),
               "test": (eval_s, EVAL_MIN_UTTERANCES)}
    made: dict[str, list[tuple[Item, float]]] = {}
    all_items: list[Item] = []
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        for split, (target_s, min_count) in targets.items():
            items = plan(split, sentences, args.seed, train_variants)
            for folder in ("clean", split) if split == "train" else (split,):
                (args.out / folder).mkdir(parents=True, exist_ok=True)
            split_start = time.perf_counter()
            made[split], rendered = render_split(items, target_s, min_count, args.out, pool, noise_rms, meter)
            all_items += rendered
            print(f"{split}: done in {time.perf_counter() - split_start:.0f} s", file=sys.stderr)
    # Test's halves and the clean training manifest before test.jsonl, which marks a finished corpus.
    for half, records in test_halves(made["test"]).items():
        write_manifest(args.out / f"{half}.jsonl", args.out, records)
    write_manifest(args.out / "train_clean.jsonl", args.out, made["train"], clean=True)
    for split, records in made.items():
        write_manifest(args.out / f"{split}.jsonl", args.out, records)
    removed = remove_stale(args.out, all_items)

    summary = {}
    for split, records in made.items():
        summary[split] = {"utterances": len(records), "hours": round(sum(d for _, d in records) / 3600, 3),
                          "speakers": len({item.voice["speaker"] for item, _ in records}),
                          "sources": dict(collections.Counter(item.sentence["source"] for item, _ in records))}
    stats_path = args.out / "stats.json"
    # Speeds are measured on the files a run makes: a rerun that found everything cached keeps the earlier figures.
    speed = json.loads(stats_path.read_text()).get("speed", {}) if stats_path.is_file() else {}
    speed.update(meter.report())
    stats = {"text": text_stats, "splits": summary, "speed": speed,
             "voices": {"train_espeak_variants": len(train_variants), "held_out_accent": HELD_OUT_ACCENT,
                        "held_out_variants": list(HELD_OUT_VARIANTS), "train_flite": list(FLITE_TRAIN),
                        "held_out_flite": FLITE_TEST},
             "wall_s": round(time.perf_counter() - started, 1), "jobs": args.jobs, "stale_files_removed": removed}
    _write_atomic(stats_path, json.dumps(stats, indent=2) + "\n")
    for name, speed in stats["speed"].items():
        print(f"{name}: {speed['files']} files, {speed['audio_h']} h, {speed['x_real_time']}x real time per job")
    for split, s in summary.items():
        print(f"{split}: {s['utterances']} utterances, {s['hours']:.2f} h, {s['speakers']} speakers, {s['sources']}")
    print(f"wall time {stats['wall_s']:.0f} s with {args.jobs} jobs")


if __name__ == "__main__":
    main()
