"""Errors a user can cause. Each kind is one exception type; the CLI turns it into one line and an exit code."""

from __future__ import annotations


class W2V2Error(Exception):
    """Base of every error the toolkit reports to users without a traceback."""

    exit_code = 1


class ConfigError(W2V2Error):
    """A model configuration or option that cannot be used."""

    exit_code = 2


class PathError(W2V2Error):
    """A problem with one file or folder; the message starts with its path."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class AudioError(PathError):
    """An audio file that cannot be used: missing, empty, corrupt, not audio, or holding NaN/Inf samples."""

    exit_code = 3


class ModelFileError(PathError):
    """A model file or folder that cannot be loaded or written."""

    exit_code = 4


class UnsafeCheckpointError(ModelFileError):
    """A checkpoint that could only be read by running code from it (arbitrary unpickling)."""


class AlignmentError(W2V2Error):
    """This transcript cannot be aligned to this audio. `num_frames` is set when the audio is too short for it,
    so a caller that knows the frame rate can say how long it is."""

    def __init__(self, message: str, num_frames: int | None = None):
        super().__init__(message)
        self.num_frames = num_frames


class TrainingError(W2V2Error):
    """Training cannot go on: repeated non-finite losses, out of memory, an output folder from another run."""

    exit_code = 5
