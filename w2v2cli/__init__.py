"""w2v2: a toolkit for wav2vec 2.0 speech models."""

__version__ = "0.1.0"

from .align import align  # noqa: E402
from .config import PRESETS, ModelConfig, preset  # noqa: E402
from .io.checkpoint import load_model, save_model  # noqa: E402
from .model import Wav2Vec2, build_model  # noqa: E402
from .results import Result, Word  # noqa: E402
from .text import Vocabulary  # noqa: E402
from .transcribe import transcribe  # noqa: E402  (the function; the module stays importable by its path)

__all__ = ["PRESETS", "ModelConfig", "Result", "Vocabulary", "Wav2Vec2", "Word", "__version__", "align", "build_model",
           "load_model", "preset", "save_model", "transcribe"]
