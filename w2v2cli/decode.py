"""CTC decoding of emissions to text with word timings: greedy (default) and beam search (pyctcdecode)."""

from __future__ import annotations

import functools
import logging
import os

import numpy as np
import torch

from .errors import ConfigError
from .results import Word
from .text import Vocabulary

__all__ = ["DEFAULT_ALPHA", "DEFAULT_BETA", "BeamDecoder", "GreedyDecoder", "Word", "best_path_runs",
           "greedy_decode"]

# The word LM's weight and word insertion bonus when neither the user nor the LM (a folder's attrs.json) gives them:
# picked on 150 dev utterances of the synthetic corpus for the embedded model's LM (docs/embedded-model.md).
DEFAULT_ALPHA, DEFAULT_BETA = 0.5, 1.0


def best_path_runs(best: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first frame, end frame) of each run of one token in a best path (T,): greedy CTC decoding keeps one token
    per run and drops the silent ones."""
    if best.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, best[1:] != best[:-1]])
    return starts, np.r_[starts[1:], best.size]


def greedy_decode(logits: torch.Tensor, frame_lengths: torch.Tensor, vocab: Vocabulary) -> list[str]:
    """Greedy CTC transcripts of a padded batch of logits (B, T, V), without timings (training's validation,
    export checks). `GreedyDecoder` is the same search with word timings, for one utterance."""
    best = logits.argmax(-1).cpu().numpy()  # (B, T)
    texts = []
    for row, n in zip(best, frame_lengths.tolist()):
        starts, _ = best_path_runs(row[:n])
        texts.append(vocab.ids_to_text(row[starts]))
    return texts


class GreedyDecoder:
    """Best path decoding with word timings from the frames where each word's characters are emitted."""

    def __init__(self, vocab: Vocabulary, frame_seconds: float):
        self.vocab, self.frame_seconds = vocab, frame_seconds
        self.silent = np.array([vocab.is_silent(i) for i in range(len(vocab))])

    def __call__(self, log_probs: torch.Tensor) -> tuple[str, list[Word]]:
        """log_probs: (T, V) for one utterance."""
        best_lp, best = log_probs.max(-1)  # the first of equal maxima, as argmax
        best, probs = best.numpy(), best_lp.exp().numpy()
        starts, ends = best_path_runs(best)
        words, chars, first, last, frame_probs = [], [], 0, 0, []

        def close():
            if chars:
                words.append(Word("".join(chars), first * self.frame_seconds, last * self.frame_seconds,
                                  float(np.mean(frame_probs))))

        for s, e in zip(starts.tolist(), ends.tolist()):
            token_id = int(best[s])
            token = self.vocab.tokens[token_id]
            if token == self.vocab.word_delimiter:
                close()
                chars, frame_probs = [], []
            elif not self.silent[token_id]:
                if not chars:
                    first = s
                chars.append(token)
                last = e
                frame_probs.extend(probs[s:e].tolist())
        close()
        return " ".join(w.word for w in words), words


def arpa_language_model(path, alpha: float, beta: float):
    """A pyctcdecode language model that scores words with an ARPA file read in Python (w2v2cli.lm), so beam
    search with a word n-gram model needs no KenLM; it scores exactly as pyctcdecode's KenLM wrapper does."""
    from pyctcdecode.constants import AVG_TOKEN_LEN, DEFAULT_UNK_LOGP_OFFSET, LOG_BASE_CHANGE_FACTOR
    from pyctcdecode.language_model import AbstractLanguageModel

    from .lm import BOS, EOS

    class ArpaLanguageModel(AbstractLanguageModel):
        def __init__(self, scorer, prefixes):
            self.scorer, self.prefixes = scorer, prefixes
            self.alpha, self.beta, self.unk_score_offset = alpha, beta, DEFAULT_UNK_LOGP_OFFSET

        @property
        def order(self) -> int:
            return self.scorer.order

        def get_start_state(self):
            return (BOS,)

        def score_partial_token(self, partial_token: str) -> float:
            unk = self.unk_score_offset * (partial_token not in self.prefixes)
            return unk * len(partial_token) / AVG_TOKEN_LEN if len(partial_token) > AVG_TOKEN_LEN else unk

        def score(self, prev_state, word: str, is_last_word: bool = False):
            scorer = self.scorer
            logp = scorer.log10(prev_state, word)
            state = scorer.state(prev_state, word)
            if word not in scorer.words:
                logp += self.unk_score_offset
            if is_last_word:
                logp += scorer.log10(state, EOS)
            return self.alpha * logp * LOG_BASE_CHANGE_FACTOR + self.beta, state

        def reset_params(self, **params) -> None:
            for name in ("alpha", "beta", "unk_score_offset"):
                if params.get(name) is not None:
                    setattr(self, name, float(params[name]))

        def save_to_dir(self, filepath: str) -> None:
            raise NotImplementedError("an ARPA model read in Python is not saved with the decoder")

        @classmethod
        def load_from_dir(cls, filepath: str):
            raise NotImplementedError("an ARPA model read in Python is not saved with the decoder")

    stat = os.stat(path)
    return ArpaLanguageModel(*_loaded_arpa(os.path.realpath(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=1)
def _loaded_arpa(path: str, mtime_ns: int, size: int):
    """The scorer and the word prefixes of an ARPA file, kept for the next decoder (evaluate builds one per data
    set; reading a 440k n-gram file takes about 3 s). Keyed by the file's path, time and size."""
    from .lm import ArpaScorer, read_arpa

    scorer = ArpaScorer(read_arpa(path))
    return scorer, frozenset(w[:i] for w in scorer.words for i in range(1, len(w) + 1))


def _unigrams_beside(lm_path) -> list[str] | None:
    """The words of `unigrams.txt` beside a KenLM file (pyctcdecode's language_model/ layout), which a binary file
    does not list; None without one (pyctcdecode reads an ARPA file's own)."""
    if lm_path is None:
        return None
    listing = os.path.join(os.path.dirname(os.fspath(lm_path)), "unigrams.txt")
    if not os.path.isfile(listing):
        return None
    try:
        with open(listing, encoding="utf-8") as f:
            return [word for line in f if (word := line.strip())]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{listing}: cannot read ({exc})") from None


def _kenlm_available() -> bool:
    try:
        import kenlm  # noqa: F401
    except ImportError:
        return False
    return True


class BeamDecoder:
    """pyctcdecode beam search, optionally with a word n-gram language model (KenLM, or an ARPA file read in
    Python) and hotwords."""

    def __init__(self, vocab: Vocabulary, frame_seconds: float, beam_width: int = 32, lm_path=None,
                 alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA, hotwords=(), hotword_weight: float = 10.0,
                 engine: str = "auto"):
        logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
        from pyctcdecode import build_ctcdecoder

        if beam_width < 1:
            raise ConfigError(f"--beam-width must be >= 1, not {beam_width}")
        python_lm = None
        if lm_path is not None:
            if not os.path.isfile(lm_path):
                raise ConfigError(f"--lm {lm_path}: no such file")
            # KenLM when installed (fast, any size, binary files too); else an ARPA file is read in Python.
            gzipped = str(lm_path).endswith(".arpa.gz")  # KenLM reads plain ARPA and its binary files
            if engine == "auto":
                engine = "kenlm" if _kenlm_available() and not gzipped else "python"
            if engine not in ("kenlm", "python"):
                raise ValueError(f"engine {engine!r}: auto, kenlm or python")
            if engine == "kenlm" and not _kenlm_available():
                raise ConfigError("--lm: KenLM is not installed: pip install 'w2v2cli[lm]'")
            if engine == "python":
                if not (str(lm_path).endswith(".arpa") or gzipped):
                    raise ConfigError(f"--lm {lm_path}: without KenLM only ARPA files (.arpa, .arpa.gz) can be "
                                      "read; pip install 'w2v2cli[lm]' for binary ones, or decode without a word "
                                      "LM (--lm none)")
                python_lm = arpa_language_model(lm_path, alpha, beta)
        # Marker tokens (<s>, </s>, <unk>, ...) carry no text: their columns are left out of the search.
        self.columns = [i for i in range(len(vocab)) if i == vocab.blank or not vocab.is_silent(i)]
        labels = ["" if i == vocab.blank else (" " if vocab.tokens[i] == vocab.word_delimiter else vocab.tokens[i])
                  for i in self.columns]
        try:
            if python_lm is not None:
                from pyctcdecode.alphabet import Alphabet
                from pyctcdecode.decoder import BeamSearchDecoderCTC

                self.decoder = BeamSearchDecoderCTC(Alphabet.build_alphabet(labels), python_lm)
            else:
                self.decoder = build_ctcdecoder(labels, kenlm_model_path=str(lm_path) if lm_path else None,
                                                unigrams=_unigrams_beside(lm_path), alpha=alpha, beta=beta)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot build the beam-search decoder: {exc}") from None
        self.frame_seconds, self.beam_width = frame_seconds, beam_width
        self.hotwords, self.hotword_weight = list(hotwords) or None, hotword_weight

    def __del__(self):
        # pyctcdecode keeps every decoder's language model in a class-level dict until it is cleaned up.
        decoder = getattr(self, "decoder", None)
        if decoder is not None:
            decoder.cleanup()

    def __call__(self, log_probs: torch.Tensor) -> tuple[str, list[Word]]:
        lp = log_probs[:, self.columns].numpy()
        if lp.shape[0] == 0:
            return "", []
        beam = self.decoder.decode_beams(lp, beam_width=self.beam_width, hotwords=self.hotwords,
                                         hotword_weight=self.hotword_weight)[0]
        best_prob = np.exp(lp.max(-1))
        words = [Word(text, start * self.frame_seconds, end * self.frame_seconds,
                      float(best_prob[start:max(end, start + 1)].mean()))
                 for text, (start, end) in beam[2]]
        return " ".join(w.word for w in words), words
