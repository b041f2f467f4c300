"""CTC forced alignment: where each word and character of a known transcript is spoken.

The transcript is normalized to the model's vocabulary; what the vocabulary cannot express (digits, symbols,
other scripts) becomes a wildcard token, "star", whose emission score is the probability of "some token" at a
frame, so words around it still get times and the unalignable word gets a span too. A star at each end of the
transcript absorbs speech the transcript does not cover.

Three Viterbi searches give the same path (tested against torchaudio, ties included): torchaudio's forced_align
for short utterances on CPU; a NumPy search for long ones that keeps only sqrt(T) checkpoints of its scores and
recomputes back-pointers segment by segment, so memory grows as sqrt(frames) x tokens instead of frames x tokens
(19 GB for one hour of speech done naively); and a batched search in torch that aligns many utterances at once
on their device (CUDA), its back-pointers held within a fixed budget the same way. `ENGINES` says which runs
where.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .batching import cut_batches
from .decode import Word
from .errors import AudioError, ConfigError, W2V2Error
from .inference import EmissionRunner
from .text import APOSTROPHES, Vocabulary, char_token_ids, letter_cases, spoken_index
from .transcribe import prefetch

UNKNOWN_POLICIES = ("star", "skip", "error")
BOUNDS = ("sound", "tokens")  # word bounds: where the sound starts and stops, or the CTC path's token frames
STAR = "<star>"
# Problems up to this many Viterbi cells (frames x states) go to torchaudio, which keeps all back-pointers.
TORCHAUDIO_MAX_CELLS = 32_000_000


class AlignmentError(W2V2Error):
    """This transcript cannot be aligned to this audio."""


@dataclass
class Alignment:
    path: str
    text: str = ""
    duration: float = 0.0
    words: list[Word] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "text": self.text, "duration": round(self.duration, 3),
                "words": [w.to_dict() for w in self.words]}


# Text -----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedWord:
    text: str  # as written in the transcript
    tokens: tuple[int, ...]  # vocabulary ids; `star_id` where the vocabulary cannot express the text
    chars: tuple[str, ...]  # what each token stands for (the original characters for a star)


def plan_transcript(text: str, vocab: Vocabulary, unknown: str = "star") -> list[PlannedWord]:
    """Words of `text` (kept as written) as vocabulary tokens, matched in the vocabulary's letter case.
    Punctuation the vocabulary lacks is not spoken and is dropped; other characters it lacks (digits, symbols,
    other scripts) follow `unknown`."""
    if unknown not in UNKNOWN_POLICIES:
        raise ConfigError(f"--unknown must be one of {', '.join(UNKNOWN_POLICIES)}, not {unknown!r}")
    index = spoken_index(vocab)
    upper, lower = letter_cases(index)
    star_id = len(vocab)
    planned = []
    for raw in unicodedata.normalize("NFKC", text).split():
        cased = raw.translate(APOSTROPHES)
        if upper and not lower:
            cased = cased.upper()
        elif lower and not upper:
            cased = cased.lower()
        tokens, chars, unknown_run = [], [], ""
        for ch in cased:
            ids = char_token_ids(ch, index)
            if ids is None and unicodedata.category(ch).startswith("P"):
                continue  # punctuation is not spoken
            if ids is None:
                if unknown == "error":
                    raise AlignmentError(f"the transcript has {ch!r} (in {raw!r}), which the model's vocabulary "
                                         "cannot express (use --unknown star or skip)")
                if unknown == "star":
                    unknown_run += ch
                continue
            if unknown_run:
                tokens.append(star_id), chars.append(unknown_run)
                unknown_run = ""
            tokens.extend(ids), chars.extend(vocab.tokens[i] for i in ids)
        if unknown_run:
            tokens.append(star_id), chars.append(unknown_run)
        if tokens:
            planned.append(PlannedWord(raw, tuple(tokens), tuple(chars)))
    return planned


def build_targets(words: list[PlannedWord], vocab: Vocabulary, edge_stars: bool
                  ) -> tuple[np.ndarray, list[tuple[int, int] | None]]:
    """Token ids to align and, per token, (word index, char index), or None for delimiters and edge stars."""
    star_id = len(vocab)
    delimiter = vocab.tokens.index(vocab.word_delimiter) if vocab.word_delimiter else None
    targets, owners = [], []

    def add(token, owner):
        targets.append(token), owners.append(owner)

    # Edge stars stand for speech outside the transcript; no delimiter goes next to them, since models rarely
    # emit one at the start or end of an utterance and every target token costs at least one frame.
    if edge_stars:
        add(star_id, None)
    for w, word in enumerate(words):
        if delimiter is not None and w:
            add(delimiter, None)
        for c, token in enumerate(word.tokens):
            add(token, (w, c))
    if edge_stars:
        add(star_id, None)
    return np.asarray(targets, dtype=np.int64), owners


def with_star_column(log_probs: torch.Tensor, blank: int, penalty: float) -> torch.Tensor:
    """(T, V) -> (T, V + 1): the star scores log P(not blank) - penalty, so it absorbs speech the transcript
    does not cover but loses to a real token that explains a frame (the penalty, in nats)."""
    not_blank = torch.log1p(-log_probs[:, blank].exp().clamp(max=1 - 1e-6))
    return torch.cat([log_probs, (not_blank - penalty).unsqueeze(1)], dim=1)


# Viterbi --------------------------------------------------------------------------------------------------------
#
# Every engine follows torchaudio.functional.forced_align's tie rule, so all give the same path: a move (stay,
# advance one state, skip a blank) is taken only when it scores strictly more than both others, otherwise the path
# stays. When advance and skip tie above staying, torchaudio stays (and keeps the staying score); so do we. At the
# last frame the path ends on the final blank only if it scores strictly more than the last token.

def viterbi_states(log_probs: np.ndarray, targets: np.ndarray, blank: int, block: int = 64) -> np.ndarray:
    """Best CTC path of `targets` through `log_probs` (T, C), as one state per frame (state 2k + 1 is token k,
    even states are blanks), with torchaudio's tie rule. Memory: sqrt(T) checkpoints of the scores plus sqrt(T)
    rows of back-pointers."""
    num_frames, num_states = log_probs.shape[0], 2 * len(targets) + 1
    ext = np.full(num_states, blank, dtype=np.int64)
    ext[1::2] = targets
    skip_penalty = np.full(max(num_states - 2, 0), -np.inf, dtype=np.float32)
    skip_penalty[1::2][targets[1:] != targets[:-1]] = 0.0  # skipping a blank between two different tokens
    skipped = np.empty_like(skip_penalty)
    tie = np.empty(skipped.shape, dtype=bool)

    def step(prev, emit, out, back=None):
        if back is not None:
            back[0] = 0
            np.greater(prev[:-1], prev[1:], out=back[1:].view(bool))
        out[0] = prev[0]
        np.maximum(prev[1:], prev[:-1], out=out[1:])
        if num_states > 2:
            np.add(prev[:-2], skip_penalty, out=skipped)
            np.equal(skipped, out[2:], out=tie)
            np.logical_and(tie, skipped > prev[2:], out=tie)
            if tie.any():  # advance and skip tie above staying: the path stays
                np.copyto(out[2:], prev[2:], where=tie)
                skipped[tie] = -np.inf
                if back is not None:
                    back[2:][tie] = 0
            if back is not None:
                back[2:][skipped > out[2:]] = 2
            np.maximum(out[2:], skipped, out=out[2:])
        out += emit

    def frames(t0, t1):  # emissions of frames [t0, t1) gathered per state, a block at a time
        for b0 in range(t0, t1, block):
            yield from log_probs[b0:min(t1, b0 + block)][:, ext]

    every = max(1, math.isqrt(num_frames))
    alpha = np.full(num_states, -np.inf, dtype=np.float32)
    alpha[0] = log_probs[0, blank]
    if num_states > 1:
        alpha[1] = log_probs[0, ext[1]]
    scratch = np.empty_like(alpha)
    checkpoints = {0: alpha.copy()}
    for t, emit in enumerate(frames(1, num_frames), start=1):
        step(alpha, emit, scratch)
        alpha, scratch = scratch, alpha
        if t % every == 0:
            checkpoints[t] = alpha.copy()
    if not np.isfinite(alpha[-2:]).any():
        raise AlignmentError("the transcript cannot fit the audio")
    state = num_states - 1 if num_states == 1 or alpha[-1] > alpha[-2] else num_states - 2
    path = np.empty(num_frames, dtype=np.int64)
    back = np.empty((every, num_states), dtype=np.int8)
    end = num_frames - 1
    for t0 in sorted(checkpoints, reverse=True):
        if t0 >= end:
            continue
        a, b = checkpoints.pop(t0), np.empty_like(alpha)
        for i, emit in enumerate(frames(t0 + 1, end + 1)):
            step(a, emit, b, back[i])
            a, b = b, a
        for t in range(end, t0, -1):
            path[t] = state
            state -= back[t - t0 - 1, state]
        end = t0
    path[0] = state
    return path


# Back-pointers a batched search may hold at once; longer problems are searched again segment by segment from
# score checkpoints, as `viterbi_states` does.
BATCH_BACKPOINTER_BYTES = 1 << 30
_BLOCK_CELLS = 1 << 22  # frames x states x utterances whose emissions are gathered at once
_BACKTRACK_FRAMES = 128  # frames per copy of back-pointers to the host while tracing paths back


def viterbi_batch(log_probs: torch.Tensor, frame_lengths: torch.Tensor, targets: torch.Tensor,
                  target_lengths: torch.Tensor, blank: int, max_backpointer_bytes: int = BATCH_BACKPOINTER_BYTES
                  ) -> list[np.ndarray | AlignmentError]:
    """Best CTC paths of a batch at once, on the device of `log_probs` (B, T, C): per utterance its states (one
    per frame, numbered as by `viterbi_states`) or the AlignmentError that says why it has none. `targets` (B, L)
    is padded; `frame_lengths` and `target_lengths` (B,) give each utterance's size.

    A loop over frames of five tensor ops on (B, 2L + 1) states and no host sync, so on CUDA it runs as one stream
    of kernels. Back-pointers take one byte per frame and state, within `max_backpointer_bytes`: beyond that the
    frames are split into segments, scores are kept at each segment's start, and each segment is searched again,
    last first, to trace the paths back."""
    device = log_probs.device
    num_frames, num_tokens = frame_lengths.tolist(), target_lengths.tolist()
    host_targets = targets.cpu().numpy()
    batch = len(num_frames)
    results: list = [_too_short(n, host_targets[b, :k]) for b, (n, k) in enumerate(zip(num_frames, num_tokens))]
    total_frames, num_states = max(num_frames, default=0), 2 * max(num_tokens, default=0) + 1
    if all(result is not None for result in results) or total_frames == 0:
        return results

    # States are stored in reverse order (state s at index num_states - 1 - s), so the moves into an index come
    # from it, the next and the one after: three shifted views of one score row, stacked in torchaudio's tie order.
    ext = np.full((batch, num_states), blank, dtype=np.int64)
    moves = np.zeros((batch, 3, num_states), dtype=np.float32)  # added to (stay, advance, skip)
    moves[:, 2] = -np.inf
    for b, k in enumerate(num_tokens):
        tokens = host_targets[b, :k]
        ext[b, 1:2 * k:2] = tokens
        moves[b, 2, 3:2 * k:2][tokens[1:] != tokens[:-1]] = 0.0  # skipping a blank between two different tokens
    ext_rev = torch.from_numpy(ext[:, ::-1].copy()).to(device)
    moves = torch.from_numpy(moves[:, :, ::-1].copy()).to(device)

    # Utterances are right-aligned in time, so all of them end at the last frame. Before its first frame an
    # utterance sits in state 0 for free, so its first frame starts from state 0 or 1, as CTC does.
    offsets = torch.tensor([total_frames - n for n in num_frames], device=device)
    rows = torch.arange(batch, device=device)[:, None, None]
    before = torch.full((batch, 1, num_states), -math.inf, device=device)
    before[:, :, -1] = 0.0

    def emissions(t0, t1):  # (B, t1 - t0, states)
        frame = torch.arange(t0, t1, device=device) - offsets[:, None]  # (B, n)
        emit = log_probs[rows, frame.clamp(min=0)[:, :, None], ext_rev[:, None, :]].float()
        return torch.where((frame >= 0)[:, :, None], emit, before)

    block = max(1, min(256, _BLOCK_CELLS // (batch * num_states)))
    scores = torch.full((batch, num_states + 2), -math.inf, device=device)  # two -inf columns: no state beyond
    scores[:, num_states - 1] = 0.0
    alpha = scores[:, :num_states]
    prev = scores.as_strided((batch, 3, num_states), (num_states + 2, 1, 1))  # (B, stay/advance/skip, states)
    cand = torch.empty(batch, 3, num_states, device=device)
    tie = torch.empty(batch, num_states, dtype=torch.bool, device=device)
    choice = torch.empty(batch, block, num_states, dtype=torch.int64, device=device)

    def search(t0, t1, back=None):  # scores through frames [t0, t1); back-pointers into back[:, :t1 - t0]
        for b0 in range(t0, t1, block):
            b1 = min(t1, b0 + block)
            emit = emissions(b0, b1)
            for k in range(b1 - b0):
                torch.add(prev, moves, out=cand)
                torch.eq(cand[:, 1], cand[:, 2], out=tie)  # neither move wins a tie: the path stays
                cand[:, 1:].masked_fill_(tie[:, None], -math.inf)
                torch.max(cand, 1, out=(alpha, choice[:, k]))  # the first of equal maxima: staying
                alpha.add_(emit[:, k])
            if back is not None:
                back[:, b0 - t0:b1 - t0] = choice[:, :b1 - b0]

    segment = max(max_backpointer_bytes // (batch * num_states), math.isqrt(total_frames))
    starts = list(range(0, total_frames, segment))
    checkpoints = []
    for t0 in starts[:-1]:
        checkpoints.append(scores.clone())
        search(t0, t0 + segment)
    back = torch.empty(batch, min(segment, total_frames), num_states, dtype=torch.uint8, device=device)
    search(starts[-1], total_frames, back)

    last_blank = num_states - 1 - 2 * np.asarray(num_tokens)  # index of each utterance's final blank
    ends = torch.from_numpy(np.stack([last_blank, np.minimum(last_blank + 1, num_states - 1)], axis=1))
    end_scores = alpha.gather(1, ends.to(device)).cpu().numpy()
    on_token = (np.asarray(num_tokens) > 0) & ~(end_scores[:, 0] > end_scores[:, 1])
    state = last_blank + on_token
    for b in range(batch):
        if results[b] is None and not np.isfinite(end_scores[b]).any():
            results[b] = AlignmentError("the transcript cannot fit the audio")
    first = [total_frames - n if results[b] is None else total_frames for b, n in enumerate(num_frames)]
    paths = np.empty((batch, total_frames), dtype=np.int64)
    for t0 in reversed(starts):
        t1 = min(total_frames, t0 + segment)
        if t0 != starts[-1]:
            scores.copy_(checkpoints.pop())
            search(t0, t1, back)
        state = _trace_back(back[:, :t1 - t0], state, paths[:, t0:t1], [max(0, f - t0) for f in first])
    return [num_states - 1 - paths[b, first[b]:] if result is None else result for b, result in enumerate(results)]


def _trace_back(back: torch.Tensor, state: np.ndarray, out: np.ndarray, first: list[int]) -> np.ndarray:
    """Follow back-pointers (B, n, states) from `state` (B,) at the last frame, writing the state of each frame
    from first[b] on into `out` (B, n); returns the states one frame before. A path moves at most two states a
    frame, so only a narrow band of back-pointers around it is copied to the host, `_BACKTRACK_FRAMES` at a time."""
    batch, num_frames, num_states = back.shape
    for k1 in range(num_frames, 0, -_BACKTRACK_FRAMES):
        k0 = max(0, k1 - _BACKTRACK_FRAMES)
        width = 2 * (k1 - k0) - 1
        cols = np.minimum(state[:, None] + np.arange(width), num_states - 1)  # (B, width)
        index = torch.from_numpy(cols).to(back.device)[:, None, :].expand(-1, k1 - k0, -1)
        band = back[:, k0:k1].gather(2, index).cpu().numpy()  # (B, k1 - k0, width)
        for b in range(batch):
            stop = max(k0, first[b])
            if stop >= k1:
                continue
            steps, s, low, at = band[b].tobytes(), int(state[b]), int(state[b]), (k1 - 1 - k0) * width
            path = []
            for _ in range(k1 - stop):
                path.append(s)
                s += steps[at + s - low]
                at -= width
            out[b, stop:k1] = path[::-1]
            state[b] = s
    return state


def _too_short(num_frames: int, targets: np.ndarray) -> AlignmentError | None:
    """Every token takes a frame, and a repeated token a blank frame between its two."""
    repeats = int((targets[1:] == targets[:-1]).sum())
    if num_frames < max(1, len(targets) + repeats):
        return AlignmentError(f"the audio is too short for the transcript: {num_frames} frames for "
                              f"{len(targets) + repeats} tokens ({num_frames * 0.02:.2f} s)")
    return None


def align_states(log_probs: torch.Tensor, targets: np.ndarray, blank: int) -> np.ndarray:
    """Viterbi states per frame of one utterance; torchaudio for small problems (faster), the checkpointed search
    otherwise."""
    error = _too_short(log_probs.shape[0], targets)
    if error is not None:
        raise error
    if log_probs.shape[0] * (2 * len(targets) + 1) <= TORCHAUDIO_MAX_CELLS:
        import torchaudio.functional as F

        labels, _ = F.forced_align(log_probs[None].float().cpu(), torch.from_numpy(targets)[None], blank=blank)
        return _states_from_labels(labels[0].numpy(), targets, blank)
    return viterbi_states(log_probs.float().cpu().numpy(), targets, blank)


# Which search aligns a batch of utterances, by device type. "single": `align_states` one utterance at a time;
# "batch": `viterbi_batch` over the batch on that device. CPU: "single", measured faster (README). CUDA: "batch",
# chosen before any GPU measurement; `benchmarks/align.py` times both and this table is what it overrides.
ENGINES = {"cpu": "single", "cuda": "batch"}
# A batched search holds at most this many states (utterances x widest transcript) per frame.
BATCH_MAX_STATES = 1 << 20
ALIGN_BATCH_ITEMS = 64  # utterances `align_iter` gathers for one batched search


def align_batch(problems: list[tuple[torch.Tensor, np.ndarray]], blank: int, device: torch.device | str = "cpu",
                engine: str | None = None) -> list[np.ndarray | AlignmentError]:
    """States per frame for each (log_probs (T, C), targets) pair, or the AlignmentError that says why it has
    none. `engine` ("single" or "batch") overrides ENGINES for the type of `device`, where a batch is searched."""
    device = torch.device(device)
    engine = engine or ENGINES.get(device.type, "batch")
    if engine == "single":
        results: list = []
        for log_probs, targets in problems:
            try:
                results.append(align_states(log_probs, targets, blank))
            except AlignmentError as exc:
                results.append(exc)
        return results
    if engine != "batch":
        raise ConfigError(f"alignment engine must be single or batch, not {engine!r}")
    results = [None] * len(problems)
    order = sorted(range(len(problems)), key=lambda n: problems[n][0].shape[0], reverse=True)
    for cut in cut_batches([2 * len(problems[n][1]) + 1 for n in order], BATCH_MAX_STATES):
        items = [order[i] for i in cut]
        log_probs = torch.nn.utils.rnn.pad_sequence([problems[n][0].float() for n in items], batch_first=True)
        targets = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(problems[n][1]) for n in items],
                                                  batch_first=True, padding_value=blank)
        frame_lengths = torch.tensor([problems[n][0].shape[0] for n in items])
        target_lengths = torch.tensor([len(problems[n][1]) for n in items])
        found = viterbi_batch(log_probs.to(device), frame_lengths, targets, target_lengths, blank)
        for n, result in zip(items, found):
            results[n] = result
    return results


def _states_from_labels(labels: np.ndarray, targets: np.ndarray, blank: int) -> np.ndarray:
    """torchaudio returns a label per frame; turn it into states (a new token starts where a non-blank label
    differs from the previous frame's, so a repeat after a blank is the next token)."""
    nonblank = labels != blank
    starts = nonblank & (labels != np.r_[blank, labels[:-1]])
    token = np.cumsum(starts) - 1  # index of the latest token started
    return np.where(nonblank, 2 * token + 1, 2 * (token + 1))


# Spans ----------------------------------------------------------------------------------------------------------

def spans_from_states(states: np.ndarray, log_probs: torch.Tensor, targets: np.ndarray, owners, words,
                      blank: int, frame_seconds: float) -> list[Word]:
    """Words with character spans from the frames each target token occupies."""
    star_id = log_probs.shape[1] - 1
    probs = log_probs.exp()
    token_frames: dict[int, list[int]] = {}
    for t, s in enumerate(states.tolist()):
        if s % 2:
            token_frames.setdefault(s // 2, []).append(t)
    char_spans: dict[int, list[Word]] = {}
    for k, owner in enumerate(owners):
        if owner is None:
            continue
        frames = token_frames[k]
        w, c = owner
        token = int(targets[k])
        if token == star_id:  # how sure the model is that something is spoken there
            score = float((1 - probs[frames, blank]).mean())
        else:
            score = float(probs[frames, token].mean())
        span = Word(words[w].chars[c], frames[0] * frame_seconds, (frames[-1] + 1) * frame_seconds, score)
        char_spans.setdefault(w, []).append(span)
    out = []
    for w, word in enumerate(words):
        chars = tuple(char_spans[w])
        weights = [c.end - c.start for c in chars]
        score = sum(c.score * n for c, n in zip(chars, weights)) / sum(weights)
        out.append(Word(word.text, chars[0].start, chars[-1].end, score, chars))
    return out


# A CTC model emits each character in a frame or two and blank around it, so a word's characters cover less than
# its sound: the last one ends where the word's last sound starts (100-150 ms early for a final long vowel), and
# the first often starts a frame or two after the onset. Word bounds are moved out to where the sound starts and
# stops: through frames that are not quiet, never into the neighbouring words.
QUIET_BELOW_LOUD_DB = 40.0  # quiet: this far below the utterance's loud frames (95th percentile level)...
QUIET_ABOVE_FLOOR_DB = 10.0  # ...or within this of its noise floor (10th percentile), whichever is higher


def frame_levels_db(audio, hop: int) -> np.ndarray:
    """RMS level in dB of each `hop`-sample frame of `audio` (frame t covers the model's frame t)."""
    samples = np.asarray(audio, dtype=np.float32)
    count = len(samples) // hop
    frames = samples[: count * hop].reshape(count, hop)  # (T, hop), a view: an hour of audio is not copied
    energy = np.einsum("ij,ij->i", frames, frames) / hop  # mean square per frame, no squared copy either
    return 10 * np.log10(energy.astype(np.float64) + 1e-12)


def extend_word_bounds(words: list[Word], levels_db: np.ndarray, frame_seconds: float,
                       duration: float) -> list[Word]:
    """Each word's end (and its last character's) moves to the first quiet frame after its characters, at most
    to the next word's start or the audio's end; then its start (and its first character's) moves back over the
    frames before it that are not quiet, at most to the previous word's end. Bounds never move inwards."""
    if not words or len(levels_db) == 0:
        return words
    threshold = max(np.percentile(levels_db, 95) - QUIET_BELOW_LOUD_DB,
                    np.percentile(levels_db, 10) + QUIET_ABOVE_FLOOR_DB)
    quiet = levels_db < threshold

    def frame(seconds: float) -> int:
        return math.floor(seconds / frame_seconds + 1e-6)

    ends = []
    for i, word in enumerate(words):
        limit = max(words[i + 1].start if i + 1 < len(words) else duration, word.end)
        t, last = frame(word.end), min(len(quiet), frame(limit))
        while t < last and not quiet[t]:
            t += 1
        ends.append(max(word.end, t * frame_seconds if t < last else limit))  # no quiet frame: up to the limit
    out = []
    for i, (word, end) in enumerate(zip(words, ends)):
        limit = min(ends[i - 1] if i else 0.0, word.start)
        t, first = frame(word.start), math.ceil(limit / frame_seconds - 1e-6)
        while t > first and t - 1 < len(quiet) and not quiet[t - 1]:
            t -= 1
        start = min(word.start, max(limit, t * frame_seconds))
        chars = word.chars
        if chars:
            chars = (replace(chars[0], start=start),) + chars[1:]
            chars = chars[:-1] + (replace(chars[-1], end=end),)
        out.append(replace(word, start=start, end=end, chars=chars))
    return out


@dataclass
class AlignmentProblem:
    """One utterance's transcript made ready for the Viterbi search."""

    words: list[PlannedWord]
    targets: np.ndarray  # token ids to align; the vocabulary size stands for the star
    owners: list[tuple[int, int] | None]  # per token: (word index, char index), or None
    log_probs: torch.Tensor  # (T, V + 1) with the star column; (T + 2, V + 1) with an edge frame at each end
    edge_stars: bool


def plan_alignment(log_probs: torch.Tensor, text: str, vocab: Vocabulary, unknown: str = "star",
                   star_penalty: float = 1.0) -> AlignmentProblem:
    """The search problem of aligning `text` to emissions (T, V) of one utterance."""
    words = plan_transcript(text, vocab, unknown)
    if not words:
        raise AlignmentError("the transcript is empty" if not text.strip() else
                             "nothing in the transcript can be aligned with this model's vocabulary")
    edge_stars = unknown == "star"
    targets, owners = build_targets(words, vocab, edge_stars)
    lp = with_star_column(log_probs, vocab.blank, star_penalty)
    if edge_stars:
        # Every target token takes at least one frame; one extra frame at each end, where only the star can be
        # emitted, makes the edge stars free when the transcript covers all the speech.
        edge = torch.full((1, lp.shape[1]), -1e4, device=lp.device)
        edge[0, -1] = 0.0
        lp = torch.cat([edge, lp, edge])
    return AlignmentProblem(words, targets, owners, lp, edge_stars)


def spans_of(problem: AlignmentProblem, states: np.ndarray, blank: int, frame_seconds: float,
             levels_db: np.ndarray | None = None, duration: float = 0.0) -> tuple[str, list[Word]]:
    """(normalized text, words with character spans) from the states the search found; with the audio's frame
    levels (`frame_levels_db`), word bounds move to where the sound starts and stops (`extend_word_bounds`)."""
    lp = problem.log_probs.cpu()
    if problem.edge_stars:
        states, lp = states[1:-1], lp[1:-1]
    aligned = spans_from_states(states, lp, problem.targets, problem.owners, problem.words, blank, frame_seconds)
    if levels_db is not None:
        aligned = extend_word_bounds(aligned, levels_db, frame_seconds, duration)
    return " ".join(w.text for w in problem.words), aligned


def align_emissions(log_probs: torch.Tensor, text: str, vocab: Vocabulary, frame_seconds: float,
                    unknown: str = "star", star_penalty: float = 1.0) -> tuple[str, list[Word]]:
    """Align `text` to emissions (T, V) of one utterance: (normalized text, words with character spans). The
    search runs where `log_probs` is, with the engine ENGINES names for that device."""
    problem = plan_alignment(log_probs, text, vocab, unknown, star_penalty)
    states = align_batch([(problem.log_probs, problem.targets)], vocab.blank, log_probs.device)[0]
    if isinstance(states, AlignmentError):
        raise states
    return spans_of(problem, states, vocab.blank, frame_seconds)


# Files ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlignRequest:
    """One item to align. `problem` marks an item that is already known to be unusable (a bad manifest line)."""

    audio: Path
    text: str
    problem: str | None = None


def align_iter(model, items: Iterable[AlignRequest | tuple], *, unknown: str = "star", star_penalty: float = 1.0,
               bounds: str = "sound", precision: str = "auto", batch_seconds: float | None = None,
               chunk_seconds: float = 30.0, context_seconds: float = 2.0, workers: int = 2) -> Iterator[Alignment]:
    """Alignments of requests or (audio path, transcript) pairs, in input order; a failing item yields an
    Alignment with `error` set and the others go on."""
    if unknown not in UNKNOWN_POLICIES:
        raise ConfigError(f"--unknown must be one of {', '.join(UNKNOWN_POLICIES)}, not {unknown!r}")
    if bounds not in BOUNDS:
        raise ConfigError(f"--bounds must be one of {', '.join(BOUNDS)}, not {bounds!r}")
    runner = EmissionRunner.for_model(model, precision, batch_seconds, None, chunk_seconds, context_seconds)
    texts: dict[int, str] = {}
    levels: dict[int, np.ndarray] = {}  # per item: frame levels of its audio, for word bounds

    def load(numbered):
        request = numbered[1]
        if request.problem:
            raise AudioError(request.audio, request.problem)
        return runner.load(request.audio)

    def loaded():
        for (index, request), audio in prefetch(_numbered(items, texts), load, workers):
            result = Alignment(str(request.audio))
            if isinstance(audio, AudioError):
                result.error = audio.reason
            else:
                result.duration = len(audio) / runner.sample_rate
                if bounds == "sound":
                    levels[index] = frame_levels_db(audio, runner.hop)
            yield (index, result), None if result.error else audio

    # On a device whose engine batches, utterances are searched ALIGN_BATCH_ITEMS at a time there.
    batching = ENGINES.get(runner.device.type, "batch") == "batch"
    pending: list[tuple[int, Alignment, AlignmentProblem | None]] = []

    def flush():
        ready = [(i, result, problem) for i, result, problem in pending if problem is not None]
        found = align_batch([(p.log_probs, p.targets) for _, _, p in ready], model.vocab.blank, runner.device)
        for (i, result, problem), states in zip(ready, found):
            if isinstance(states, AlignmentError):
                result.error = str(states)
            else:
                result.text, result.words = spans_of(problem, states, model.vocab.blank, runner.frame_seconds,
                                                     levels.get(i), result.duration)
        for i, _, _ in pending:
            levels.pop(i, None)
        yield from (result for _, result, _ in pending)
        pending.clear()

    for (i, result), emissions in runner.stream(loaded()):
        text, problem = texts.pop(i, None), None
        if emissions is not None:
            try:
                problem = plan_alignment(emissions, text, model.vocab, unknown, star_penalty)
            except AlignmentError as exc:
                result.error = str(exc)
        pending.append((i, result, problem))
        if len(pending) >= (ALIGN_BATCH_ITEMS if batching else 1):
            yield from flush()
    yield from flush()


def _numbered(items, texts):
    for i, item in enumerate(items):
        request = item if isinstance(item, AlignRequest) else AlignRequest(Path(item[0]), item[1])
        texts[i] = request.text
        yield i, request



def align(model, audio, text: str, **options) -> Alignment:
    """Align one transcript to one audio file. Options as for `align_iter`."""
    return next(align_iter(model, [(Path(audio), text)], **options))
