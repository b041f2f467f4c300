"""Viterbi searches for CTC forced alignment: the best path of a target token sequence through emissions.

Three searches give the same path (tested against torchaudio, ties included): torchaudio's forced_align for
short utterances; a NumPy search for long ones that keeps only sqrt(T) checkpoints of its scores and recomputes
back-pointers segment by segment, so memory grows as sqrt(frames) x tokens instead of frames x tokens (19 GB for
one hour of speech done naively); and a batched search in torch that aligns many utterances at once on their
device, its back-pointers held within a fixed budget the same way. `ENGINES` says which runs where.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..batching import cut_batches
from ..errors import AlignmentError, ConfigError

# Problems up to this many Viterbi cells (frames x states) go to torchaudio, which keeps all back-pointers.
TORCHAUDIO_MAX_CELLS = 32_000_000

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
    num_frames, num_tokens = frame_lengths.tolist(), target_lengths.tolist()
    host_targets = targets.cpu().numpy()
    tokens = [host_targets[b, :k] for b, k in enumerate(num_tokens)]
    results: list = [_too_short(n, t) for n, t in zip(num_frames, tokens)]
    if all(result is not None for result in results) or max(num_frames, default=0) == 0:
        return results

    search = _BatchSearch(log_probs, num_frames, tokens, blank)
    batch, total_frames, num_states = len(num_frames), search.total_frames, search.num_states
    segment = max(max_backpointer_bytes // (batch * num_states), math.isqrt(total_frames))
    starts = list(range(0, total_frames, segment))
    checkpoints = []
    for t0 in starts[:-1]:
        checkpoints.append(search.scores.clone())
        search.run(t0, t0 + segment)
    back = torch.empty(batch, min(segment, total_frames), num_states, dtype=torch.uint8, device=search.device)
    search.run(starts[-1], total_frames, back)

    state = search.final_states(results)
    first = [total_frames - n if results[b] is None else total_frames for b, n in enumerate(num_frames)]
    paths = np.empty((batch, total_frames), dtype=np.int64)
    for t0 in reversed(starts):
        t1 = min(total_frames, t0 + segment)
        if t0 != starts[-1]:
            search.scores.copy_(checkpoints.pop())
            search.run(t0, t1, back)
        state = _trace_back(back[:, :t1 - t0], state, paths[:, t0:t1], [max(0, f - t0) for f in first])
    return [num_states - 1 - paths[b, first[b]:] if result is None else result for b, result in enumerate(results)]


class _BatchSearch:
    """The forward pass of `viterbi_batch`: scores of every state of every utterance, a frame at a time, on the
    device of the emissions; `run` advances them over a span of frames and may record back-pointers."""

    def __init__(self, log_probs: torch.Tensor, num_frames: list[int], tokens: list[np.ndarray], blank: int):
        device = self.device = log_probs.device
        batch = len(num_frames)
        self.log_probs, self.num_tokens = log_probs, np.asarray([len(t) for t in tokens])
        self.total_frames, num_states = max(num_frames), 2 * int(self.num_tokens.max(initial=0)) + 1
        self.num_states = num_states
        # States are stored in reverse order (state s at index num_states - 1 - s), so the moves into an index
        # come from it, the next and the one after: three shifted views of one score row, stacked in torchaudio's
        # tie order.
        ext = np.full((batch, num_states), blank, dtype=np.int64)
        moves = np.zeros((batch, 3, num_states), dtype=np.float32)  # added to (stay, advance, skip)
        moves[:, 2] = -np.inf
        for b, t in enumerate(tokens):
            ext[b, 1:2 * len(t):2] = t
            moves[b, 2, 3:2 * len(t):2][t[1:] != t[:-1]] = 0.0  # skipping a blank between two different tokens
        self.ext_rev = torch.from_numpy(ext[:, ::-1].copy()).to(device)
        self.moves = torch.from_numpy(moves[:, :, ::-1].copy()).to(device)

        # Utterances are right-aligned in time, so all of them end at the last frame. Before its first frame an
        # utterance sits in state 0 for free, so its first frame starts from state 0 or 1, as CTC does.
        self.offsets = torch.tensor([self.total_frames - n for n in num_frames], device=device)
        self.rows = torch.arange(batch, device=device)[:, None, None]
        self.before = torch.full((batch, 1, num_states), -math.inf, device=device)
        self.before[:, :, -1] = 0.0

        self.block = max(1, min(256, _BLOCK_CELLS // (batch * num_states)))
        # Two -inf columns past the last state: no state beyond it to come from.
        self.scores = torch.full((batch, num_states + 2), -math.inf, device=device)
        self.scores[:, num_states - 1] = 0.0
        self.alpha = self.scores[:, :num_states]
        # (B, stay/advance/skip, states): three overlapping views of the score row
        self.prev = self.scores.as_strided((batch, 3, num_states), (num_states + 2, 1, 1))
        self.cand = torch.empty(batch, 3, num_states, device=device)
        self.tie = torch.empty(batch, num_states, dtype=torch.bool, device=device)
        self.choice = torch.empty(batch, self.block, num_states, dtype=torch.int64, device=device)

    def emissions(self, t0: int, t1: int) -> torch.Tensor:
        """(B, t1 - t0, states): each state's emission score at frames [t0, t1)."""
        frame = torch.arange(t0, t1, device=self.device) - self.offsets[:, None]  # (B, n)
        emit = self.log_probs[self.rows, frame.clamp(min=0)[:, :, None], self.ext_rev[:, None, :]].float()
        return torch.where((frame >= 0)[:, :, None], emit, self.before)

    def run(self, t0: int, t1: int, back: torch.Tensor | None = None) -> None:
        """Scores through frames [t0, t1); with `back`, the back-pointers of those frames into back[:, :t1 - t0]."""
        prev, moves, cand, tie, alpha, choice = self.prev, self.moves, self.cand, self.tie, self.alpha, self.choice
        for b0 in range(t0, t1, self.block):
            b1 = min(t1, b0 + self.block)
            emit = self.emissions(b0, b1)
            for k in range(b1 - b0):
                torch.add(prev, moves, out=cand)
                torch.eq(cand[:, 1], cand[:, 2], out=tie)  # neither move wins a tie: the path stays
                cand[:, 1:].masked_fill_(tie[:, None], -math.inf)
                torch.max(cand, 1, out=(alpha, choice[:, k]))  # the first of equal maxima: staying
                alpha.add_(emit[:, k])
            if back is not None:
                back[:, b0 - t0:b1 - t0] = choice[:, :b1 - b0]

    def final_states(self, results: list) -> np.ndarray:
        """Each utterance's state (as an index) at the last frame: its last token, or the final blank where that
        scores strictly more. An utterance that reaches neither gets its AlignmentError in `results`."""
        num_states = self.num_states
        last_blank = num_states - 1 - 2 * self.num_tokens  # index of each utterance's final blank
        ends = torch.from_numpy(np.stack([last_blank, np.minimum(last_blank + 1, num_states - 1)], axis=1))
        end_scores = self.alpha.gather(1, ends.to(self.device)).cpu().numpy()
        on_token = (self.num_tokens > 0) & ~(end_scores[:, 0] > end_scores[:, 1])
        for b in range(len(results)):
            if results[b] is None and not np.isfinite(end_scores[b]).any():
                results[b] = AlignmentError("the transcript cannot fit the audio")
        return last_blank + on_token


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
    """Every token takes a frame, and a repeated token a blank frame between its two. (The error gives frames; the
    caller, who knows how long a frame is, adds seconds: `describe`.)"""
    repeats = int((targets[1:] == targets[:-1]).sum())
    if num_frames < max(1, len(targets) + repeats):
        return AlignmentError(f"the audio is too short for the transcript: {num_frames} frames for "
                              f"{len(targets) + repeats} tokens", num_frames)
    return None


def describe(error: AlignmentError, frame_seconds: float) -> str:
    """The error's message for a user: with the audio's length in seconds when it was too short."""
    if error.num_frames is None:
        return str(error)
    return f"{error} ({error.num_frames * frame_seconds:.2f} s)"


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


# Which search aligns a batch of utterances, by device type. "single": `align_states` one utterance at a time,
# torchaudio's kernel (or the checkpointed NumPy search for long ones) on the CPU; "batch": `viterbi_batch` over
# the batch on that device. CPU: "single", measured faster (docs/benchmarks.md, Forced alignment). CUDA: "single"
# too, until the batched search has been measured on a GPU (`benchmarks/align.py` times both); "batch" stays
# selectable (`engine=`).
ENGINES = {"cpu": "single", "cuda": "single"}
# A batched search holds at most this many states (utterances x widest transcript) per frame.
BATCH_MAX_STATES = 1 << 20


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

