"""w2v2: a toolkit for wav2vec 2.0 speech models."""

__version__ = "0.1.0"

from .align import align
from .config import PRESETS, ModelConfig, preset
from .io.checkpoint import load_model, save_model
from .model import Wav2Vec2, build_model
from .results import Result, Word
from .text import Vocabulary
from .transcribe import transcribe

__all__ = ["PRESETS", "ModelConfig", "Result", "Vocabulary", "Wav2Vec2", "Word", "__version__", "align", "build_model",
           "load_model", "preset", "save_model", "transcribe"]
