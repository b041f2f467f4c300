"""Package a fine-tuned run as the toolkit's embedded default model: fp16 storage, provenance in the metadata,
checked against the fp32 model before it replaces anything.

Usage:
    python recipes/synthetic-en/package_model.py RUN/model.safetensors PROVENANCE.json \
        [--out w2v2cli/models/default.safetensors] [--check-audio sample_audio]

PROVENANCE.json says what the model is and how it was trained (`w2v2 info` shows it). The fp16 copy must give
the same greedy transcripts as the fp32 model on --check-audio, and its logits must stay within 0.05 of them;
otherwise nothing is written. The file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from w2v2cli import load_model, save_model, transcribe
from w2v2cli.io.audio import find_audio_files, load_audio
from w2v2cli.summary import PROVENANCE_KEY

LOGIT_TOLERANCE = 0.05
SIZE_LIMIT_MB = 25


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("provenance", type=Path)
    parser.add_argument("--out", type=Path, default=Path("w2v2cli/models/default.safetensors"))
    parser.add_argument("--check-audio", type=Path, default=Path("sample_audio"))
    args = parser.parse_args()

    provenance = json.loads(args.provenance.read_text(encoding="utf-8"))
    model = load_model(args.model).eval()
    files = find_audio_files(args.check_audio)
    if not files:
        sys.exit(f"{args.check_audio}: no audio to check the packaged model on")
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "default.safetensors"
        half = load_model(args.model).half()
        save_model(half, staged, extra_metadata={PROVENANCE_KEY: json.dumps(provenance, ensure_ascii=False)})
        packaged = load_model(staged).eval()
        worst = 0.0
        with torch.inference_mode():
            for path in files:
                audio = torch.as_tensor(load_audio(path, model.config.sample_rate))[None]
                lengths = torch.tensor([audio.shape[1]])
                worst = max(worst, (model(audio, lengths)[0] - packaged(audio, lengths)[0]).abs().max().item())
        same = [a.text == b.text for a, b in zip(transcribe(model, files), transcribe(packaged, files))]
        size_mb = staged.stat().st_size / 2**20
        print(f"fp16 vs fp32 on {len(files)} files: max logit difference {worst:.4f}, "
              f"{sum(same)}/{len(same)} transcripts identical, {size_mb:.1f} MB", file=sys.stderr)
        if worst > LOGIT_TOLERANCE or not all(same):
            sys.exit("the fp16 copy does not reproduce the model; nothing was written")
        if size_mb > SIZE_LIMIT_MB:
            sys.exit(f"{size_mb:.1f} MB is over the {SIZE_LIMIT_MB} MB budget of the embedded model")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        _copy(staged, args.out)
    print(args.out)
    return 0


def _copy(source: Path, target: Path) -> None:
    """To a temporary name beside the target (the staging folder may be another file system), then rename."""
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(source.read_bytes())
    partial.replace(target)


if __name__ == "__main__":
    sys.exit(main())
