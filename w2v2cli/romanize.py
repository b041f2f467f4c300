"""Romanization for alignment (`align --romanize`): a transcript in any script spelled in Latin letters by uroman,
so a model trained on Latin letters (or on romanized text, as multilingual aligners are) can align it.

Each word is romanized on its own, so the transcript's word boundaries survive: the aligned word keeps its
original spelling and only its letters come from the romanization.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from .io.common import import_optional

ROMANIZE_EXTRA = "pip install 'w2v2cli[romanize]'"


@functools.cache
def _uroman():
    # Loading uroman's tables takes seconds: once per process, and only when asked for.
    module = import_optional("uroman", ROMANIZE_EXTRA)
    return module.Uroman()


def load_romanizer() -> Callable[[str], str]:
    """A function from one word to its romanization with uroman. Raises MissingDependencyError, naming the extra
    to install, when uroman is not installed."""
    uroman = _uroman()

    def romanize(word: str) -> str:
        # One word in, one word out: uroman may put a space inside (a number beside letters), which would cut the
        # word in two for the aligner.
        return "".join(uroman.romanize_string(word).split())

    return romanize
