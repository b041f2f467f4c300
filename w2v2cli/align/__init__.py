"""CTC forced alignment: where each word and character of a known transcript is spoken.

Four parts, in the order an utterance passes through them:
- `plan`: the transcript as vocabulary tokens to align; what the vocabulary cannot spell becomes a wildcard,
  "star", and a star at each end absorbs speech the transcript does not cover.
- `viterbi`: the best CTC path of those tokens through the emissions; three searches that give the same path
  (torchaudio's, a checkpointed NumPy one for long audio, a batched torch one), `ENGINES` picks by device.
- `spans`: the path as character and word spans in seconds, word bounds moved out to where the sound is.
- `segments` (with `segments=True`): the transcript's lines as segments with times and a score that says whether
  the audio matches the line; clips cut from them with a manifest.
- `driver`: files in, results out, streaming: `align_iter`, `align`.

With `romanize=True` a word's letters come from its uroman romanization (`w2v2cli.romanize`), so text in any
script aligns with a Latin-letter model; words are reported as written.
"""

from ..errors import AlignmentError
from .driver import BOUNDS, AlignRequest, align, align_emissions, align_iter
from .plan import UNKNOWN_POLICIES, AlignmentProblem, PlannedWord, build_targets, plan_alignment, plan_transcript
from .segments import cut_segments, keep_segments, segment_score, segments_of
from .spans import extend_word_bounds, frame_levels_db, spans_from_states, spans_of
from .viterbi import ENGINES, align_batch, align_states, viterbi_batch, viterbi_states

__all__ = [
    "BOUNDS", "ENGINES", "UNKNOWN_POLICIES", "AlignRequest", "AlignmentError", "AlignmentProblem", "PlannedWord",
    "align", "align_batch", "align_emissions", "align_iter", "align_states",
    "build_targets", "cut_segments", "extend_word_bounds", "frame_levels_db", "keep_segments", "plan_alignment",
    "plan_transcript", "segment_score", "segments_of", "spans_from_states", "spans_of", "viterbi_batch",
    "viterbi_states",
]
