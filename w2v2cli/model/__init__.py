from .masks import frame_lengths, padding_mask
from .wav2vec2 import Wav2Vec2, build_model, normalize_waveforms

__all__ = ["Wav2Vec2", "build_model", "frame_lengths", "normalize_waveforms", "padding_mask"]
