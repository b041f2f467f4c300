"""Word n-gram language models for beam search: an interpolated Kneser-Ney estimate written as an ARPA file.

`--beam --lm FILE` decodes with KenLM through pyctcdecode; KenLM reads ARPA files but its Python package cannot
estimate one (that is KenLM's `lmplz`, a separate C++ build). This module estimates one from transcripts in
pure Python, so a model's own training text gives it a language model with no other tool.

The estimate is interpolated Kneser-Ney (Chen & Goodman 1998) with one discount per order,
D = n1 / (n1 + 2 n2) from the counts of counts. The highest order uses raw counts; lower orders use
continuation counts (how many distinct words precede the n-gram), except n-grams that begin with <s>, which
nothing can precede, so they keep raw counts (as KenLM does). Unigrams interpolate with the uniform
distribution over the vocabulary plus <unk>, which takes its share of that mass. In an interpolated model the
backoff weight of a context is exactly its interpolation weight, so the ARPA file holds the full model.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, ModelFileError
from .io.atomic import atomic_open

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def _discount(counts: Counter) -> float:
    n = Counter(c for c in counts.values() if c <= 2)
    n1, n2 = n[1], n[2]
    if n1 == 0:
        return 0.5
    d = n1 / (n1 + 2 * n2) if n2 else 0.5
    return min(max(d, 0.05), 0.95)


def estimate(sentences: Iterable[str], order: int = 3, min_count: int = 1) -> dict:
    """Interpolated Kneser-Ney n-gram model of whitespace-split sentences.

    Returns {"order", "ngrams": [ {ngram tuple: (log10 prob, log10 backoff)} per order ], "sentences", "words"}.
    `min_count` > 1 leaves out highest-order n-grams seen fewer times (their mass goes to the backoff).
    """
    if order < 1:
        raise ConfigError(f"n-gram order {order}: must be >= 1")
    raw, n_sentences, n_words = _raw_counts(sentences, order)
    if n_sentences == 0:
        raise ConfigError("no words to estimate a language model from")
    adjusted = _adjusted_counts(raw, min_count)
    vocab = {g[0] for g in raw[0]} | {UNK}
    vocab.discard(BOS)
    probs, gammas = _interpolate(raw, adjusted, vocab)
    return {"order": order, "ngrams": _log_tables(probs, gammas), "sentences": n_sentences, "words": n_words}


def _raw_counts(sentences: Iterable[str], order: int) -> tuple[list[Counter], int, int]:
    """raw[k]: counts of the (k+1)-grams of the sentences framed by <s> and </s>; sentences and words counted."""
    raw: list[Counter] = [Counter() for _ in range(order)]
    n_sentences = n_words = 0
    for sentence in sentences:
        words = sentence.split()
        if not words:
            continue
        n_sentences += 1
        n_words += len(words)
        tokens = [BOS] + words + [EOS]
        for k in range(order):
            n = k + 1
            for i in range(len(tokens) - n + 1):
                gram = tuple(tokens[i:i + n])
                if gram == (BOS,):
                    continue
                raw[k][gram] += 1
    return raw, n_sentences, n_words


def _adjusted_counts(raw: list[Counter], min_count: int) -> list[Counter]:
    """Raw counts for the highest order (pruned below `min_count`) and for n-grams that begin with <s>;
    continuation counts for the rest."""
    order = len(raw)
    adjusted: list[Counter] = [Counter() for _ in range(order)]
    adjusted[order - 1] = Counter({g: c for g, c in raw[order - 1].items() if c >= min_count or g[0] == BOS})
    for k in range(order - 1):
        for gram, count in raw[k].items():
            if gram[0] == BOS:
                adjusted[k][gram] = count
        for gram in raw[k + 1]:  # each distinct (k+2)-gram x w1..wn adds one left extension to w1..wn
            suffix = gram[1:]
            if suffix[0] != BOS:
                adjusted[k][suffix] += 1
    return adjusted


def _interpolate(raw: list[Counter], adjusted: list[Counter], vocab: set) -> tuple[list[dict], list[dict]]:
    """Interpolated probabilities per order, lowest first, and the interpolation weight of each context
    (gammas[k][context of length k])."""
    order = len(raw)
    probs: list[dict] = [{} for _ in range(order)]
    gammas: list[dict] = [{} for _ in range(order)]
    for k in range(order):
        counts = adjusted[k]
        d = _discount(raw[k] if k == order - 1 else counts)
        # A context's total counts every n-gram it was seen with, pruned ones too; what the kept ones leave
        # (their discounts and the pruned n-grams' whole counts) is the interpolation weight.
        totals: dict = defaultdict(float)
        for gram, c in (raw[k] if k == order - 1 else counts).items():
            totals[gram[:-1]] += c
        kept: dict = defaultdict(float)
        for gram, c in counts.items():
            kept[gram[:-1]] += max(c - d, 0)
        for ctx, total in totals.items():
            gammas[k][ctx] = 1.0 - kept[ctx] / total
        if k == 0:
            total = totals[()]
            uniform = gammas[0][()] / len(vocab)
            for w in vocab:
                probs[0][(w,)] = max(counts.get((w,), 0) - d, 0) / total + uniform
            continue
        for gram, c in counts.items():
            ctx = gram[:-1]
            lower = _backed_off(probs, gammas, gram[1:])
            probs[k][gram] = max(c - d, 0) / totals[ctx] + gammas[k][ctx] * lower
    return probs, gammas


def _log_tables(probs: list[dict], gammas: list[dict]) -> list[dict]:
    """Per order, {n-gram: (log10 prob, log10 backoff)} as ARPA lists them."""
    order = len(probs)
    ngrams = []
    for k in range(order):
        table = {}
        for gram, p in probs[k].items():
            bow = gammas[k + 1].get(gram) if k + 1 < order else None
            table[gram] = (math.log10(p), math.log10(bow) if bow else 0.0)
        ngrams.append(table)
    # <s> is only ever a context: ARPA lists it with probability -99 and its backoff.
    bos_bow = gammas[1].get((BOS,)) if order > 1 else None
    ngrams[0][(BOS,)] = (-99.0, math.log10(bos_bow) if bos_bow else 0.0)
    return ngrams


def _backed_off(probs: list[dict], gammas: list[dict], gram: tuple) -> float:
    """P(gram[-1] | gram[:-1]) from the tables built so far, backing off through the interpolation weights."""
    weight = 1.0
    while True:
        k = len(gram) - 1
        p = probs[k].get(gram)
        if p is not None:
            return weight * p
        if k == 0:
            return weight * probs[0][(UNK,)]
        weight *= gammas[k].get(gram[:-1], 1.0)
        gram = gram[1:]


def arpa_text(model: dict) -> str:
    ngrams = model["ngrams"]
    lines = ["\\data\\"] + [f"ngram {k + 1}={len(t)}" for k, t in enumerate(ngrams)] + [""]
    for k, table in enumerate(ngrams):
        lines.append(f"\\{k + 1}-grams:")
        highest = k == len(ngrams) - 1
        for gram in sorted(table):
            logp, bow = table[gram]
            entry = f"{logp:.6f}\t{' '.join(gram)}"
            lines.append(entry if highest else f"{entry}\t{bow:.6f}")
        lines.append("")
    lines.append("\\end\\")
    return "\n".join(lines) + "\n"


def read_sentences(paths: Iterable, vocab=None, stats: dict | None = None):
    """Sentences from text files (one per line; `-` is stdin) or .jsonl manifests (their "text" field), each
    normalized as transcripts are for training: into `vocab`'s letter case and characters when given (the
    model the LM will decode with), else upper case, letters, digits and apostrophes. `stats` counts lines
    read and lines left without a word."""
    import sys

    stats = stats if stats is not None else {}
    stats.setdefault("lines", 0)
    stats.setdefault("empty", 0)
    for path in paths:
        path = str(path)
        if path != "-" and not Path(path).is_file():
            raise ConfigError(f"{path}: no such text file")
        try:
            with contextlib.nullcontext(sys.stdin) if path == "-" else open(path, encoding="utf-8") as f:
                yield from _sentences(f, path, vocab, stats)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _sentences(lines, path: str, vocab, stats: dict):
    import json

    from .text import encode_transcript, training_characters

    for number, line in enumerate(lines, 1):
        if path.endswith(".jsonl"):
            if not line.strip():
                continue
            try:
                line = json.loads(line)["text"]
            except (ValueError, KeyError, TypeError):
                raise ConfigError(f"{path}:{number}: not a JSON object with a \"text\" field") from None
        stats["lines"] += 1
        text = encode_transcript(line, vocab)[1] if vocab is not None else training_characters(line)[0]
        if text.split():
            yield text
        else:
            stats["empty"] += 1


def write_arpa(sentences: Iterable[str], path: Path, order: int = 3, min_count: int = 1) -> dict:
    """Estimate a model and write it atomically as ARPA; returns its sizes."""
    model = estimate(sentences, order=order, min_count=min_count)
    with atomic_open(Path(path)) as f:
        f.write(arpa_text(model))
    return {"order": order, "sentences": model["sentences"], "words": model["words"],
            "ngrams": [len(t) for t in model["ngrams"]]}


def _open_text(path: Path):
    """A text file for reading, gzip-compressed when its name ends in .gz."""
    import gzip

    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_arpa(path: Path) -> tuple[list[dict], list[dict]]:
    """The n-gram tables of an ARPA file (gzip-compressed when its name ends in .gz), compact for large models:
    per order, {tuple of words: log10 prob} and {tuple of words: log10 backoff} (non-zero backoffs only), with
    every word string stored once."""
    path = Path(path)
    probs: list[dict] = []
    backoffs: list[dict] = []
    words_seen: dict = {}
    section = 0
    try:
        with _open_text(path) as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line or line == "\\data\\" or line.startswith("ngram "):
                    continue
                if line == "\\end\\":
                    break
                if line.startswith("\\") and line.endswith("-grams:"):
                    section = int(line[1:-7])
                    if section != len(probs) + 1:
                        raise ValueError(f"line {number}: {line} out of order")
                    probs.append({})
                    backoffs.append({})
                    continue
                if not section:
                    raise ValueError(f"line {number}: an n-gram before any \\N-grams: header")
                if "\t" in line:
                    fields = line.split("\t")
                    logp, words = float(fields[0]), fields[1].split()
                    bow = float(fields[2]) if len(fields) > 2 else 0.0
                else:  # space-separated: logp w1 .. wN [bow]
                    fields = line.split()
                    logp, words = float(fields[0]), fields[1:1 + section]
                    bow = float(fields[1 + section]) if len(fields) > 1 + section else 0.0
                if len(words) != section:
                    raise ValueError(f"line {number}: {section}-gram expected")
                gram = tuple(words_seen.setdefault(w, w) for w in words)
                probs[-1][gram] = logp
                if bow:
                    backoffs[-1][gram] = bow
    except (OSError, EOFError, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise ConfigError(f"{path}: not a readable ARPA file ({exc})") from None
    if not probs or not probs[0]:
        raise ConfigError(f"{path}: not a readable ARPA file (no unigrams)")
    return probs, backoffs


def arpa_counts(path: Path) -> list[int]:
    """The n-gram counts an ARPA file's header declares (`ngram N=count`), read without loading the model."""
    path = Path(path)
    counts = []
    try:
        with _open_text(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("ngram "):
                    counts.append(int(line.split("=", 1)[1]))
                elif line.startswith("\\") and line.endswith("-grams:"):
                    break
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable ARPA file ({exc})") from None
    return counts


class ArpaScorer:
    """log10 P(word | context) of an ARPA model with backoff, the value KenLM's BaseScore gives."""

    def __init__(self, tables: tuple[list[dict], list[dict]]):
        self.probs, self.backoffs = tables
        self.order = len(self.probs)
        self.unk_logp = self.probs[0].get((UNK,), -100.0)
        self.words = {g[0] for g in self.probs[0]} - {BOS, EOS, UNK}

    def state(self, context: tuple, word: str) -> tuple:
        keep = self.order - 1
        return (context + (word,))[len(context) + 1 - keep:] if keep else ()

    def log10(self, context: tuple, word: str) -> float:
        backoff = 0.0
        while True:
            gram = context + (word,)
            logp = self.probs[len(gram) - 1].get(gram)
            if logp is not None:
                return logp + backoff
            if not context:
                return self.unk_logp + backoff
            backoff += self.backoffs[len(context) - 1].get(context, 0.0)
            context = context[1:]


# A Hugging Face folder's own word LM, in pyctcdecode's layout (what transformers' Wav2Vec2ProcessorWithLM saves):
# language_model/ holds one ARPA or KenLM binary file, attrs.json (alpha, beta, ...) and unigrams.txt.
LANGUAGE_MODEL_FOLDER = "language_model"
LM_FILE_SUFFIXES = (".arpa", ".arpa.gz", ".bin", ".binary")


@dataclass(frozen=True)
class ModelLanguageModel:
    """A model's own word language model and the decoding weights that come with it (None: not given)."""

    path: Path             # an ARPA file (.arpa, .arpa.gz) or a KenLM binary
    alpha: float | None = None
    beta: float | None = None

    @property
    def is_arpa(self) -> bool:
        return self.path.name.endswith((".arpa", ".arpa.gz"))


def model_language_model(model_path) -> ModelLanguageModel | None:
    """The word LM a model comes with, or None: a Hugging Face folder's `language_model/` (pyctcdecode's layout,
    its alpha and beta from attrs.json), or the embedded model's `default-lm.arpa.gz`. A `language_model/` folder
    that holds no LM file, or several, or an unreadable attrs.json, is a ModelFileError naming it."""
    from . import hub

    path = Path(model_path)
    if path.is_file() and path.resolve() == hub.EMBEDDED_MODEL.resolve():
        return ModelLanguageModel(hub.EMBEDDED_LM) if hub.EMBEDDED_LM.is_file() else None
    folder = path / LANGUAGE_MODEL_FOLDER
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.name.endswith(LM_FILE_SUFFIXES) and p.is_file())
    if len(files) != 1:
        found = f"several ({', '.join(p.name for p in files)})" if files else "none"
        raise ModelFileError(folder, f"a word LM folder holds one ARPA or KenLM file ({', '.join(LM_FILE_SUFFIXES)})"
                                     f"; found {found}")
    alpha = beta = None
    attrs = folder / "attrs.json"
    if attrs.is_file():
        try:
            weights = json.loads(attrs.read_text(encoding="utf-8"))
            alpha, beta = (None if weights.get(k) is None else float(weights[k]) for k in ("alpha", "beta"))
        except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
            raise ModelFileError(attrs, f"not a readable pyctcdecode attrs.json ({exc})") from None
    return ModelLanguageModel(files[0], alpha, beta)
