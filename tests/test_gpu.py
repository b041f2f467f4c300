"""CUDA checks of the model core; skipped on machines without a GPU."""

import pytest
import torch
from helpers import speechlike
from test_model import pad_batch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.fixture(autouse=True)
def exact_fp32():
    # Full fp32 for the invariance comparisons (cuDNN convolutions default to TF32).
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def test_cuda_matches_cpu_and_is_batch_invariant(tiny_model):
    waveforms = [torch.from_numpy(speechlike(n, seed=i)) for i, n in enumerate([32000, 3200, 17777])]
    batch, lengths = pad_batch(waveforms)
    with torch.no_grad():
        cpu_logits, frames = tiny_model(batch, lengths)
        gpu = tiny_model.to("cuda")
        logits, gpu_frames = gpu(batch.cuda(), lengths.cuda())
        assert torch.equal(frames, gpu_frames.cpu())
        assert (logits.cpu() - cpu_logits).abs().max().item() <= 1e-4
        for i, w in enumerate(waveforms):
            alone, _ = gpu(w[None].cuda())
            assert (logits[i, : frames[i]] - alone[0]).abs().max().item() <= 1e-4


def test_bf16_autocast_runs_and_stays_close(tiny_model):
    model = tiny_model.to("cuda")
    x = torch.from_numpy(speechlike(32000))[None].cuda()
    with torch.no_grad():
        ref, _ = model(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out, _ = model(x)
    assert torch.isfinite(out).all()
    assert (out.float().argmax(-1) == ref.argmax(-1)).float().mean() > 0.9
