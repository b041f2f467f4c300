"""Character vocabularies for CTC heads."""

from __future__ import annotations

import json
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
    def from_characters(cls, characters) -> "Vocabulary":
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
        return {"tokens": list(self.tokens), "blank": self.blank, "word_delimiter": self.word_delimiter, "unk": self.unk}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> "Vocabulary":
        try:
            return cls(tuple(data["tokens"]), int(data.get("blank", 0)), data.get("word_delimiter"), data.get("unk"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid vocabulary: {exc}") from None
