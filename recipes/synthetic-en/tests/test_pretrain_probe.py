"""recipes/synthetic-en/pretrain_probe.py: short pretraining runs in w2v2 and in transformers, one JSON line per
logged update with the collapse figures, and one-line errors for bad settings."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SPEECH = ROOT / "tests" / "fixtures" / "speech"


def probe_module():
    spec = importlib.util.spec_from_file_location("pretrain_probe", ROOT / "recipes/synthetic-en/pretrain_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("implementation", ["w2v2", "transformers"])
def test_probe_reports_collapse_figures(implementation, capsys):
    pytest.importorskip("transformers")
    probe_module().main([str(SPEECH), "--implementation", implementation, "--updates", "3", "--log-every", "2",
                         "--batch-samples", "96000", "--crop-samples", "32000", "--set", "num_negatives=5"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["update"] for line in lines] == [2, 3]
    for line in lines:
        assert line["implementation"] == implementation
        assert line["chance"] == pytest.approx(1.7918, abs=1e-4)  # ln(1 + 5 distractors)
        assert 0.0 < line["contrastive"] < 20.0
        assert -1.0 <= line["context_cosine"] <= 1.0 and -1.0 <= line["target_cosine"] <= 1.0
        assert line["grad_norm"] > 0.0


def test_probe_rejects_bad_settings():
    probe = probe_module()
    with pytest.raises(SystemExit, match="expected FIELD=VALUE"):
        probe.main([str(SPEECH), "--set", "mask_length"])
    with pytest.raises(SystemExit, match="no pretraining setting 'mask_len'"):
        probe.main([str(SPEECH), "--set", "mask_len=3"])
    with pytest.raises(SystemExit, match="must be a number"):
        probe.main([str(SPEECH), "--set", "mask_length=three"])
    with pytest.raises(SystemExit, match="takes --set mask_prob"):
        probe.main([str(SPEECH), "--implementation", "transformers", "--set", "codebook_entries=8"])
    with pytest.raises(SystemExit, match=r"^pretrain_probe\.py: invalid pretraining config: mask_prob"):
        probe.main([str(SPEECH), "--set", "mask_prob=2"])
    with pytest.raises(SystemExit, match=r"^pretrain_probe\.py: .*missing\.jsonl"):
        probe.main([str(SPEECH / "missing.jsonl")])
    with pytest.raises(SystemExit, match="no utterance of"):
        probe.main([str(SPEECH), "--implementation", "transformers", "--crop-samples", "160000",
                    "--batch-samples", "480000"])
