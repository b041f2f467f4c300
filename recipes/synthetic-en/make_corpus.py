"""A synthetic English speech corpus from the Debian text-to-speech engines (espeak-ng, flite), for training and
testing without downloads.

Usage:
    python recipes/synthetic-en/make_corpus.py OUT [--hours 2] [--seed 1] [--jobs 2]

Needs `espeak-ng`, `flite` and `sox` (apt-get install espeak-ng flite sox). Writes 16 kHz mono FLAC files and
three manifests that every w2v2 training command reads:

    OUT/train.jsonl   `--hours` of speech from the training speakers
    OUT/dev.jsonl     new sentences, training speakers (about 5% of the training size)
    OUT/test.jsonl    new sentences, held-out speakers (about 5%): 8 espeak-ng voices and flite's slt

Sentences come from a small grammar over about 700 common English words (seeded), so transcripts are
grammatical but varied. A "speaker" is a TTS voice with a fixed speed and pitch; there are 67 of them
(espeak-ng voices x variants x prosody, and flite's voices). Every record carries `speaker`, `duration` and
the generating `voice`.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf

NAMES = ("anna ben clara david emma frank grace henry iris jack kate leo maria nora oscar paul rosa sam tina "
         "victor walter alice brian carol diana ethan fiona george hannah ivan julia kevin laura martin nina").split()
NOUNS = ("man woman child teacher doctor farmer driver student friend neighbor mother father sister brother "
         "king queen soldier artist writer singer baker captain pilot nurse lawyer worker stranger family "
         "house garden river mountain forest city village road bridge window door table chair book letter "
         "paper picture song story voice music market school office station train plane ship boat car horse "
         "dog cat bird fish tree flower stone field island ocean lake sky sun moon star cloud rain snow wind "
         "morning evening night day week year summer winter spring autumn hour minute moment water bread "
         "coffee tea milk apple orange sugar salt money ticket key box bag coat hat shoe glass cup plate "
         "bottle kitchen room floor wall corner street park church hospital library museum theater factory "
         "farm shop bank hotel restaurant beach hill valley desert field problem question answer idea plan "
         "reason result answer game team match price truth secret language word name number color light fire "
         "machine computer phone camera radio engine wheel clock map lamp candle blanket pillow basket bucket "
         "ladder hammer needle thread rope knife fork spoon oven mirror").split()
VERBS = ("saw found took gave made wanted needed liked opened closed carried brought bought sold painted "
         "cleaned watched helped called visited followed remembered forgot answered asked explained described "
         "moved pushed pulled lifted dropped washed fixed built broke lost kept held showed told wrote read "
         "heard noticed counted checked changed chose borrowed ordered packed filled emptied covered "
         "collected measured studied reached left").split()
INTRANSITIVE = ("smiled laughed waited walked slept arrived returned worked listened stopped started danced "
                "shouted whispered sang cried jumped rested stayed travelled disappeared agreed hurried "
                "continued paused wondered").split()
ADJECTIVES = ("old young small large tall short long quiet loud bright dark warm cold heavy light empty full "
              "clean dirty busy lazy happy sad kind angry brave calm careful clever famous strange simple "
              "beautiful ugly rich poor fresh green red blue yellow white black brown golden silver wooden "
              "narrow wide deep sharp soft hard sweet bitter early late ancient modern gentle wild").split()
ADVERBS = ("slowly quickly quietly carefully suddenly happily sadly gently loudly finally often never always "
           "again together alone early late soon today yesterday tomorrow").split()
PLACES = ("in the garden|at the station|near the river|on the bridge|behind the house|under the tree|across "
          "the street|inside the museum|by the window|at the market|in the kitchen|on the hill|through the "
          "forest|along the beach|outside the school|in the village|at the hospital|on the island").split("|")
TIMES = ("in the morning|at night|after dinner|before noon|every day|last week|next summer|on monday|on "
         "friday|at midnight|during the storm|after the game|before the rain|in the spring").split("|")
DETERMINERS = ("the", "a", "this", "that", "every", "her", "his", "our", "their", "my", "your", "one")
NUMBERS = "two three four five six seven eight nine ten twenty".split()


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


def speakers() -> list[dict]:
    """67 voices: espeak-ng accents x variants x (speed, pitch), and flite's four English voices."""
    out = []
    accents = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
    variants = ("m1", "m3", "m7", "f1", "f2", "f4", "klatt", "croak", "whisper", "m4")
    prosody = ((150, 45), (170, 55), (185, 35))
    rng = random.Random(0)
    for accent in accents:
        for variant in variants:
            speed, pitch = rng.choice(prosody)
            out.append({"engine": "espeak-ng", "voice": f"{accent}+{variant}", "speed": speed, "pitch": pitch})
    out = [s for s in out if "whisper" not in s["voice"]][:68]  # whispered speech is too far from speech
    for voice in ("awb", "rms", "slt", "kal16"):
        out.append({"engine": "flite", "voice": voice})
    for i, s in enumerate(out):
        s["speaker"] = f"spk{i:02d}"
    return out


def render(text: str, speaker: dict, path: Path) -> float:
    """Speak `text` with `speaker` into a 16 kHz mono FLAC; returns its duration in seconds."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as raw:
        if speaker["engine"] == "espeak-ng":
            cmd = ["espeak-ng", "-v", speaker["voice"], "-s", str(speaker["speed"]), "-p", str(speaker["pitch"]),
                   "-w", raw.name, text]
        else:
            cmd = ["flite", "-voice", speaker["voice"], "-t", text, "-o", raw.name]
        subprocess.run(cmd, check=True, capture_output=True)
        subprocess.run(["sox", raw.name, "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True,
                       capture_output=True)
    return sf.info(str(path)).duration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--hours", type=float, default=2.0, help="training speech to generate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    missing = [tool for tool in ("espeak-ng", "flite", "sox") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"make_corpus: needs {', '.join(missing)}: apt-get install espeak-ng flite sox")

    rng = random.Random(args.seed)
    voices = speakers()
    # 8 espeak-ng speakers and flite's slt are never in training: test speakers no model has heard.
    held_out = {v["speaker"] for v in voices[::9]} | {v["speaker"] for v in voices if v["voice"] == "slt"}
    train_voices = [v for v in voices if v["speaker"] not in held_out]
    test_voices = [v for v in voices if v["speaker"] in held_out]
    seconds_per_utterance = 2.85  # measured average of this grammar across the voices
    splits = {"train": int(args.hours * 3600 / seconds_per_utterance)}
    splits["dev"] = splits["test"] = max(20, splits["train"] // 20)
    used: set[str] = set()
    jobs = []
    for split, count in splits.items():
        pool = test_voices if split == "test" else train_voices
        folder = args.out / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            text = sentence(rng)
            while text in used:  # dev and test sentences never occur in training
                text = sentence(rng)
            used.add(text)
            jobs.append((split, f"{split}-{i:06d}", text, pool[i % len(pool)] if split != "train"
                         else rng.choice(pool)))
    records: dict[str, list[dict]] = {split: [] for split in splits}
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(render, text, voice, args.out / split / f"{uid}.flac"): (split, uid, text, voice)
                   for split, uid, text, voice in jobs}
        for done, future in enumerate(cf.as_completed(futures), 1):
            split, uid, text, voice = futures[future]
            records[split].append({"id": uid, "audio": f"{split}/{uid}.flac", "text": text.upper(),
                                   "speaker": voice["speaker"], "voice": voice["voice"],
                                   "duration": round(future.result(), 4)})
            if done % 500 == 0:
                print(f"{done}/{len(jobs)} utterances", file=sys.stderr)
    for split, items in records.items():
        items.sort(key=lambda r: r["id"])
        with open(args.out / f"{split}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in items)
        hours = sum(r["duration"] for r in items) / 3600
        print(f"{split}: {len(items)} utterances, {hours:.2f} h, {len({r['speaker'] for r in items})} speakers")


if __name__ == "__main__":
    main()
