"""Running an exported `.onnx` model in place of the PyTorch one (`w2v2 transcribe --model model.onnx`).

The exported graph takes (waveforms, lengths) only, so long files are windowed as usual but each window is
normalized with its own statistics instead of the whole file's: files up to `--chunk-seconds` (30 s) give the
PyTorch model's transcripts, longer ones of group-norm or normalizing models may differ slightly at windows.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import ModelConfig
from .errors import ModelFileError
from .io.common import import_optional, parse_description
from .model.masks import frame_lengths as stack_frame_lengths
from .model.masks import samples_for_frames

# Exported graphs need inputs of at least two frames: the tracers specialize a one-frame axis away.
MIN_FRAMES = 2


def min_samples(config: ModelConfig) -> int:
    """The shortest input an exported graph of `config` accepts."""
    return samples_for_frames(MIN_FRAMES, config.conv_layers)


class OnnxModel:
    """Quacks like a CTC `Wav2Vec2` for inference: config, vocab, frame_lengths and __call__ on CPU."""

    accepts_stats = False

    def __init__(self, path, threads: int | None = None):
        ort = import_optional("onnxruntime")
        self.path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelFileError(path, f"not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "w2v2_config" not in metadata or "w2v2_vocab" not in metadata:
            raise ModelFileError(path, "an ONNX model without w2v2 metadata (export it with `w2v2 export`)")
        self.config, self.vocab = parse_description(path, metadata["w2v2_config"], metadata["w2v2_vocab"])
        self.ctc_head = True  # exported graphs always end in the CTC head
        self.min_samples = int(metadata.get("min_samples", min_samples(self.config)))

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return stack_frame_lengths(lengths, self.config.conv_layers)

    def __call__(self, waveforms: torch.Tensor, lengths: torch.Tensor, stats=None):
        if waveforms.shape[1] < self.min_samples:  # the graph needs two frames; pad, the lengths stay true
            waveforms = torch.nn.functional.pad(waveforms, (0, self.min_samples - waveforms.shape[1]))
        logits, frames = self.session.run(None, {"waveforms": waveforms.float().cpu().numpy(),
                                                 "lengths": lengths.cpu().numpy()})
        logits, frames = torch.from_numpy(logits), torch.from_numpy(frames)
        # Padding up to min_samples adds frames past every utterance's length: drop them.
        return logits[:, : int(frames.max()) if len(frames) else 0], frames

    def parameters(self):
        yield torch.zeros(0)  # on the CPU

    def to(self, device):
        return self  # onnxruntime's CPU provider, whatever device the PyTorch path would use

    def eval(self):
        return self

    def num_parameters(self) -> int:
        return 0
