"""Character vocabularies for CTC heads."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass

from .errors import ConfigError

BLANK = "<pad>"
WORD_DELIMITER = "|"
UNK = "<unk>"


def is_marker(token: str) -> bool:
    """Angle-bracketed tokens (<s>, </s>, <pad>, <unk>, <unused_7>...) carry no text and are dropped in output."""
    return len(token) > 2 and token[0] == "<" and token[-1] == ">"


@dataclass(frozen=True)
class Vocabulary:
    """CTC output tokens in id order. `blank` is the CTC blank's id; `word_delimiter` separates words."""

    tokens: tuple[str, ...]
    blank: int = 0
    word_delimiter: str | None = WORD_DELIMITER
    unk: str | None = UNK

    def __post_init__(self):
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if not self.tokens:
            raise ConfigError("a vocabulary needs at least one token")
        if len(set(self.tokens)) != len(self.tokens):
            dupes = sorted({t for t in self.tokens if self.tokens.count(t) > 1})
            raise ConfigError(f"vocabulary has duplicate tokens: {', '.join(map(repr, dupes))}")
        if not 0 <= self.blank < len(self.tokens):
            raise ConfigError(f"blank id {self.blank} is outside the vocabulary of {len(self.tokens)} tokens")
        if self.word_delimiter is not None and self.word_delimiter not in self.tokens:
            object.__setattr__(self, "word_delimiter", None)
        if self.unk is not None and self.unk not in self.tokens:
            object.__setattr__(self, "unk", None)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def blank_token(self) -> str:
        return self.tokens[self.blank]

    @classmethod
    def from_characters(cls, characters) -> Vocabulary:
        """Blank, delimiter and unknown first, then the given characters (space is the delimiter)."""
        chars = [c for c in dict.fromkeys(characters) if c not in (" ", WORD_DELIMITER)]
        return cls((BLANK, WORD_DELIMITER, UNK, *chars), blank=0)

    def is_silent(self, token_id: int) -> bool:
        """True for ids that carry no text: the blank, markers (<s>, </s>, <unused_7>...) and the unknown token."""
        token = self.tokens[token_id]
        return token_id == self.blank or is_marker(token) or token == self.unk

    def ids_to_text(self, ids) -> str:
        """Tokens of already-collapsed CTC ids to text: silent ids dropped, delimiter -> space."""
        pieces = []
        for i in ids:
            token = self.tokens[int(i)]
            if self.is_silent(int(i)):
                continue
            pieces.append(" " if token == self.word_delimiter else token)
        return " ".join("".join(pieces).split())

    def to_dict(self) -> dict:
        return {"tokens": list(self.tokens), "blank": self.blank, "word_delimiter": self.word_delimiter,
                "unk": self.unk}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        try:
            return cls(tuple(data["tokens"]), int(data.get("blank", 0)), data.get("word_delimiter"), data.get("unk"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid vocabulary: {exc}") from None


# Typographic apostrophes are the same sound as the ASCII one.
APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def spoken_index(vocab: Vocabulary) -> dict[str, int]:
    """Token -> id for tokens that stand for spoken characters (no blank, markers or word delimiter)."""
    index = {t: i for i, t in enumerate(vocab.tokens) if i != vocab.blank and not is_marker(t)}
    index.pop(vocab.word_delimiter, None)
    return index


def letter_cases(index: dict[str, int]) -> tuple[bool, bool]:
    """(has upper-case letters, has lower-case letters) among single-character tokens."""
    letters = [t for t in index if len(t) == 1 and t.isalpha()]
    return any(t.isupper() for t in letters), any(t.islower() for t in letters)


def char_token_ids(ch: str, index: dict[str, int]) -> list[int] | None:
    """Ids for one character; accented letters fall back to their base letters when the vocabulary has those
    (é -> e). None when the vocabulary cannot express it."""
    if ch in index:
        return [index[ch]]
    base = [c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)]
    if base and all(c in index for c in base):
        return [index[c] for c in base]
    return None


def training_characters(text: str) -> tuple[str, list[str]]:
    """A transcript as it enters a new character vocabulary: NFKC, unified apostrophes, upper case, letters,
    digits and apostrophes kept, words separated by single spaces. Returns (text, dropped characters)."""
    kept, dropped = [], []
    for word in unicodedata.normalize("NFKC", text).translate(APOSTROPHES).upper().split():
        chars = [c for c in word if c.isalnum() or c == "'"]
        dropped.extend(c for c in word if not (c.isalnum() or c == "'"))
        if chars:
            kept.append("".join(chars))
    return " ".join(kept), dropped


def encode_transcript(text: str, vocab: Vocabulary) -> tuple[list[int], str, list[str]]:
    """CTC targets of a transcript: (token ids with the word delimiter between words, the normalized text the
    ids spell, characters dropped because the vocabulary cannot express them). Matched in the vocabulary's
    letter case; punctuation the vocabulary lacks is dropped like any other inexpressible character."""
    index = spoken_index(vocab)
    upper, lower = letter_cases(index)
    delimiter = vocab.tokens.index(vocab.word_delimiter) if vocab.word_delimiter is not None else None
    ids: list[int] = []
    words: list[str] = []
    dropped: list[str] = []
    for raw in unicodedata.normalize("NFKC", text).translate(APOSTROPHES).split():
        word = raw.upper() if upper and not lower else raw.lower() if lower and not upper else raw
        word_ids, spelled = [], []
        for ch in word:
            found = char_token_ids(ch, index)
            if found is None:
                dropped.append(ch)
                continue
            word_ids.extend(found)
            spelled.extend(vocab.tokens[i] for i in found)
        if not word_ids:
            continue
        if ids and delimiter is not None:
            ids.append(delimiter)
        ids.extend(word_ids)
        words.append("".join(spelled))
    return ids, " ".join(words), dropped
