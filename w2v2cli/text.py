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
    """(has upper-case letters, has lower-case letters) among single-character tokens. Only letters with a form
    in the other case count: an upper-cased vocabulary keeps lower-case letters that have no capital (ĸ, some
    IPA letters), and those do not make it a mixed-case one."""
    letters = [t for t in index if len(t) == 1 and t.isalpha()]
    return (any(t.isupper() and t.lower() != t for t in letters),
            any(t.islower() and t.upper() != t for t in letters))


# Joiners inside a word are spelling in some scripts (Persian's ZWNJ in می‌خواهم, Malayalam chillu letters), so
# they stay with the letter before them like a combining mark does.
JOINERS = frozenset("\u200c\u200d")


def normalize_text(text: str) -> str:
    """The one normal form of every transcript, vocabulary and alignment text: NFKC (its output is NFC-composed,
    and it folds compatibility variants: fullwidth letters, ligatures, Arabic presentation forms, as MMS's text
    normalization does) with the typographic apostrophes unified."""
    return unicodedata.normalize("NFKC", text).translate(APOSTROPHES)


def fold_case(word: str, upper: bool, lower: bool) -> str:
    """`word` in the case of a vocabulary with upper-case (`upper`) and/or lower-case (`lower`) letters; left as
    written when it has both or neither. Scripts without case are untouched by str.upper/lower. The result is
    NFC again: case mapping can decompose (ΐ -> Ϊ + U+0301)."""
    if upper and not lower:
        word = word.upper()
    elif lower and not upper:
        word = word.lower()
    else:
        return word
    return unicodedata.normalize("NFC", word)


def is_mark(ch: str) -> bool:
    """A combining mark (vowel signs, viramas, tone marks, diacritics: Unicode categories M*) or a joiner."""
    return unicodedata.category(ch)[0] == "M" or ch in JOINERS


def graphemes(word: str) -> list[str]:
    """A normalized word split into graphemes: each character with the combining marks that follow it (marks at
    the start of a word, with nothing to combine with, are graphemes of their own)."""
    out: list[str] = []
    for ch in word:
        if out and is_mark(ch):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def char_token_ids(ch: str, index: dict[str, int]) -> list[int] | None:
    """Ids for one character; a composed character the vocabulary lacks falls back to its decomposition when the
    vocabulary has marks as tokens (ế -> e + marks), else to its base letters (é -> e). None when the vocabulary
    cannot express it."""
    if ch in index:
        return [index[ch]]
    decomposed = unicodedata.normalize("NFKD", ch)
    if len(decomposed) > 1 and all(c in index for c in decomposed):
        return [index[c] for c in decomposed]
    base = [c for c in decomposed if not unicodedata.combining(c)]
    if base and all(c in index for c in base):
        return [index[c] for c in base]
    return None


def spell_grapheme(grapheme: str, index: dict[str, int]) -> tuple[list[int] | None, str]:
    """(token ids, marks the vocabulary lacks and leaves out) of one grapheme; ids None when the vocabulary
    cannot express its base character, which takes its marks with it, or when it has no base (a mark that
    starts a word, which a new vocabulary never keeps either). A missing mark on a known base is left out like
    a diacritic (the base letter is still what is spoken, as é -> e)."""
    ids = None if is_mark(grapheme[0]) else char_token_ids(grapheme[0], index)
    if ids is None:
        return None, ""
    lost = ""
    for mark in grapheme[1:]:
        found = char_token_ids(mark, index)
        if found is None:
            lost += mark
        else:
            ids = ids + found
    return ids, lost


def is_kept(grapheme: str) -> bool:
    """Whether a grapheme enters a new vocabulary: its base is a letter, a digit or an apostrophe."""
    return grapheme[0].isalnum() or grapheme[0] == "'"


# Tokens are single code points, combining marks their own tokens (क + ् + त + े, not the cluster क्ते), as MMS's
# vocabularies and transformers' Wav2Vec2CTCTokenizer do: a script's letters and marks are a few dozen tokens
# each seen often, where grapheme clusters would be hundreds (every consonant with every vowel sign), most of
# them rare in a small training set; CTC emits a mark in the frames after its letter like any other token.
def training_characters(text: str) -> tuple[str, list[str]]:
    """A transcript as it enters a new character vocabulary: normalized (`normalize_text`), upper case in cased
    scripts, graphemes whose base is a letter, digit or apostrophe kept with their combining marks, words
    separated by single spaces. Returns (text, dropped characters)."""
    kept, dropped = [], []
    for word in normalize_text(text).split():
        chars = []
        for grapheme in graphemes(fold_case(word, upper=True, lower=False)):
            (chars if is_kept(grapheme) else dropped).append(grapheme)
        if chars:
            kept.append("".join(chars))
    return " ".join(kept), [c for g in dropped for c in g]


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
    for raw in normalize_text(text).split():
        word_ids: list[int] = []
        for grapheme in graphemes(fold_case(raw, upper, lower)):
            found, lost = spell_grapheme(grapheme, index)
            dropped.extend(grapheme if found is None else lost)
            word_ids.extend(found or ())
        if not word_ids:
            continue
        if ids and delimiter is not None:
            ids.append(delimiter)
        ids.extend(word_ids)
        words.append("".join(vocab.tokens[i] for i in word_ids))
    return ids, " ".join(words), dropped
