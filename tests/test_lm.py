"""`w2v2 lm` and beam search with a word n-gram model: the Kneser-Ney estimate, the ARPA file, the scorer that
reads it in Python, and the decoder it steers."""

import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import run_cli

from w2v2cli import Vocabulary
from w2v2cli.decode import BeamDecoder
from w2v2cli.errors import ConfigError
from w2v2cli.lm import BOS, EOS, UNK, ArpaScorer, arpa_text, estimate, read_arpa, write_arpa

VOCAB = Vocabulary.from_characters("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
TEXT = ["THE CAT SAT ON THE MAT", "THE DOG SAT ON THE LOG", "A CAT AND A DOG", "THE CAT",
        "ON THE MAT THE CAT SAT", "SAN FRANCISCO", "SAN FRANCISCO IS FAR", "I SAW SAN FRANCISCO", "I SAW A CAT"]


def scorer(tmp_path, sentences=TEXT, **kw):
    path = tmp_path / "lm.arpa"
    write_arpa(sentences, path, **kw)
    return ArpaScorer(read_arpa(path))


@pytest.mark.parametrize("order,min_count", [(1, 1), (2, 1), (3, 1), (3, 2), (4, 1)])
def test_every_context_is_a_distribution(tmp_path, order, min_count):
    """Through the ARPA file and its backoff weights, P(. | context) sums to 1 over the vocabulary (</s> and
    <unk> included) for seen, partly seen and unseen contexts, pruned or not."""
    s = scorer(tmp_path, order=order, min_count=min_count)
    outcomes = sorted(s.words) + [EOS, UNK]
    for context in [(BOS,), (BOS, "THE"), ("THE", "CAT"), ("CAT",), ("ON", "THE"), ("NEVER", "THE"), ("SAN",),
                    ("I", "SAW", "SAN"), ()]:
        context = context[len(context) - (order - 1):] if order > 1 else ()
        total = sum(10 ** s.log10(context, w) for w in outcomes)
        assert total == pytest.approx(1.0, abs=1e-5), context


def test_kneser_ney_counts_contexts_not_occurrences(tmp_path):
    """FRANCISCO and CAT occur four times each, but FRANCISCO only ever after SAN: as a unigram (after an unseen
    context) Kneser-Ney gives CAT, seen after four different words, (4 - D) / (1 - D) > 3 times its probability;
    after SAN, FRANCISCO is near certain."""
    s = scorer(tmp_path, ["SAN FRANCISCO"] * 4 + ["A CAT", "THE CAT", "MY CAT", "HIS CAT"], order=2)
    assert s.log10(("NEVER",), "CAT") - s.log10(("NEVER",), "FRANCISCO") > math.log10(3)
    assert 10 ** s.log10(("SAN",), "FRANCISCO") > 0.5
    assert s.log10(("THE",), "ZEBRA") == pytest.approx(s.log10(("THE",), UNK))


def test_a_hand_computed_unigram(tmp_path):
    """Two sentences "A B" and "B". Continuation counts (distinct words before): A 1 (<s>), B 2 (A, <s>),
    </s> 1 (B), 4 in all; counts of counts n1 = 2, n2 = 1, so D = n1 / (n1 + 2 n2) = 0.5; the discounted
    mass 3 x D / 4 is spread over A, B, </s> and <unk>: P(B) = (2 - D) / 4 + (3 D / 4) / 4."""
    model = estimate(["A B", "B"], order=2)
    d = 0.5
    expected = (2 - d) / 4 + (3 * d / 4) / 4
    assert 10 ** model["ngrams"][0][("B",)][0] == pytest.approx(expected, rel=1e-6)


def test_the_arpa_text_reads_back(tmp_path):
    model = estimate(TEXT, order=3)
    path = tmp_path / "m.arpa"
    path.write_text(arpa_text(model))
    probs, backoffs = read_arpa(path)
    assert [len(t) for t in probs] == [len(t) for t in model["ngrams"]]
    for k, original in enumerate(model["ngrams"]):
        for gram, (logp, bow) in original.items():
            assert probs[k][gram] == pytest.approx(logp, abs=1e-6)
            assert backoffs[k].get(gram, 0.0) == pytest.approx(bow, abs=1e-6)


def test_the_python_scorer_matches_kenlm(tmp_path):
    kenlm = pytest.importorskip("kenlm", reason="KenLM is optional (pip install 'w2v2cli[lm]')")
    path = tmp_path / "m.arpa"
    write_arpa(TEXT, path, order=3, min_count=2)
    ours, theirs = ArpaScorer(read_arpa(path)), kenlm.Model(str(path))
    for sentence in TEXT + ["THE ZEBRA SAT ON SAN FRANCISCO", "A A A", "DOG"]:
        words = sentence.split()
        context, total = (BOS,), 0.0
        for w in words + [EOS]:
            total += ours.log10(context, w)
            context = ours.state(context, w)
        assert total == pytest.approx(theirs.score(sentence, bos=True, eos=True), abs=1e-4)


def emissions(columns):
    """Log-probs from per-frame {character: probability} (`_` blank, `|` word delimiter), the rest shared."""
    lp = np.full((len(columns), len(VOCAB)), 1e-4, np.float32)
    for t, probs in enumerate(columns):
        for c, p in probs.items():
            lp[t, VOCAB.blank if c == "_" else VOCAB.tokens.index(c)] = p
    lp /= lp.sum(1, keepdims=True)
    return torch.from_numpy(np.log(lp))


def test_the_language_model_steers_beam_search(tmp_path):
    """The acoustics lean to KAT (0.55 against 0.45); the word model, which knows CAT, overrules them, as
    pyctcdecode's KenLM wrapper would with the same scores. Without the model, beam search keeps KAT."""
    path = tmp_path / "lm.arpa"
    write_arpa(TEXT, path)
    sure = lambda c: {c: 0.95}
    lp = emissions([sure("T"), sure("H"), sure("E"), sure("|"), {"K": 0.55, "C": 0.45}, sure("A"), sure("T"),
                    sure("|"), sure("S"), sure("A"), sure("T"), sure("_")])
    assert BeamDecoder(VOCAB, 0.02, beam_width=16)(lp)[0] == "THE KAT SAT"
    text, words = BeamDecoder(VOCAB, 0.02, beam_width=16, lm_path=path, engine="python")(lp)
    assert text == "THE CAT SAT"
    assert [w.word for w in words] == ["THE", "CAT", "SAT"]


def test_read_arpa_refuses_broken_files(tmp_path):
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=1\n\n\\2-grams:\n-1.0\tA B\n")
    with pytest.raises(ConfigError, match=r"bad\.arpa: not a readable ARPA file"):
        read_arpa(bad)
    bad.write_text("\\data\\\nngram 1=1\n\n\\1-grams:\nnot-a-number\tA\n")
    with pytest.raises(ConfigError, match="not a readable ARPA file"):
        read_arpa(bad)
    fake = tmp_path / "fake.arpa.gz"
    fake.write_text("not gzip")
    with pytest.raises(ConfigError, match=r"fake\.arpa\.gz: not a readable ARPA file"):
        read_arpa(fake)


def run(*args, stdin=None):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "w2v2cli", *map(str, args)], capture_output=True, text=True,
                          input=stdin, env=env)


def test_the_command_normalizes_text_and_writes_the_model(tmp_path):
    """Text is normalized as training transcripts are (upper case, punctuation dropped), stdin works, lines
    without a word are counted, the summary goes to stdout, and the file is a normal user file."""
    (tmp_path / "a.txt").write_text("The cat's hat, sat!\n\n...\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "Hello world"}) + "\n")
    result = run("lm", tmp_path / "a.txt", tmp_path / "b.jsonl", "-", "-o", tmp_path / "lm.arpa", "--order", 2,
                 stdin="one more line\n")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["sentences"] == 3 and summary["words"] == 9 and summary["lines"] == 5
    assert summary["empty_lines"] == 2 and summary["ngrams"][0] == 12  # 9 words, <s>, </s>, <unk>
    tables, _ = read_arpa(tmp_path / "lm.arpa")
    assert ("CAT'S", "HAT") in tables[1] and ("HELLO", "WORLD") in tables[1] and ("MORE", "LINE") in tables[1]
    assert oct((tmp_path / "lm.arpa").stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "lm.arpa"
    (tmp_path / "ok.txt").write_text("A B C\n")
    (tmp_path / "bad.jsonl").write_text('{"words": 1}\n')
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00A")
    (tmp_path / "blank.txt").write_text("\n!!!\n")
    cases = [
        (["missing.txt"], "missing.txt: no such text file"),
        ([tmp_path / "bad.jsonl"], "bad.jsonl:1: not a JSON object"),
        ([tmp_path / "bin.txt"], "bin.txt: not UTF-8"),
        ([tmp_path / "blank.txt"], "no words"),
        ([tmp_path / "ok.txt", "--order", 0], "--order 0"),
        ([tmp_path / "ok.txt", "--min-count", 0], "--min-count 0"),
    ]
    for args, message in cases:
        result = run_cli("lm", *args, "-o", out)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
    nowhere = run_cli("lm", tmp_path / "ok.txt", "-o", tmp_path / "no" / "lm.arpa")
    assert nowhere.returncode == 2 and "does not exist" in nowhere.stderr
    (tmp_path / "folder").mkdir()
    folder = run_cli("lm", tmp_path / "ok.txt", "-o", tmp_path / "folder")
    assert folder.returncode == 2 and "is a folder" in folder.stderr and len(folder.stderr.strip().splitlines()) == 1
    assert list((tmp_path / "folder").iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_transcribe_with_the_python_language_model(tmp_path):
    """`transcribe --beam --lm FILE.arpa` runs end to end without KenLM (a random tiny model: only that it
    decodes and reports words)."""
    import soundfile as sf
    from helpers import speechlike

    from w2v2cli import build_model, preset, save_model

    model = build_model(preset("tiny", vocab_size=len(VOCAB)), VOCAB)
    save_model(model, tmp_path / "m.safetensors")
    sf.write(tmp_path / "a.wav", speechlike(16000), 16000)
    write_arpa(["A B C", "THE CAT"], tmp_path / "lm.arpa")
    result = run("transcribe", tmp_path / "a.wav", "-m", tmp_path / "m.safetensors", "--beam", "--lm",
                 tmp_path / "lm.arpa", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    assert "text" in json.loads(result.stdout.splitlines()[0])


# -- a model's own word LM: a Hugging Face folder's language_model/ (pyctcdecode's layout) ----------------------

@pytest.fixture
def folder_with_lm(tmp_path):
    """A random tiny model saved as a Hugging Face folder with language_model/ (an ARPA file, attrs.json with its
    own alpha and beta, unigrams.txt), and a test utterance."""
    import soundfile as sf
    from helpers import speechlike

    from w2v2cli import build_model, preset
    from w2v2cli.io.hf import save_hf_folder

    torch.manual_seed(0)
    folder = save_hf_folder(build_model(preset("tiny", vocab_size=len(VOCAB)), VOCAB).eval(), tmp_path / "model")
    lm = folder / "language_model"
    lm.mkdir()
    write_arpa(TEXT, lm / "3gram.arpa")
    (lm / "attrs.json").write_text(json.dumps({"alpha": 2.0, "beta": 3.0, "unk_score_offset": -10.0,
                                               "score_boundary": True}))
    (lm / "unigrams.txt").write_text("\n".join(sorted({w for s in TEXT for w in s.split()})) + "\n")
    sf.write(tmp_path / "a.wav", speechlike(32000, seed=3), 16000)
    return folder, tmp_path / "a.wav"


def beam_text(*args):
    result = run_cli("transcribe", *args, "-f", "jsonl", "-q")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["text"]


def test_a_folders_own_language_model_steers_beam_search(folder_with_lm):
    """--beam on a folder with language_model/ decodes with its LM and attrs.json weights: the same text as naming
    that file and those weights, another than without a word LM (--lm none), and only words the LM knows."""
    folder, wav = folder_with_lm
    own = beam_text("-m", folder, wav, "--beam")
    none = beam_text("-m", folder, wav, "--beam", "--lm", "none")
    named = beam_text("-m", folder, wav, "--lm", folder / "language_model" / "3gram.arpa", "--alpha", "2",
                      "--beta", "3")
    assert own == named != none
    assert own and set(own.split()) <= {w for s in TEXT for w in s.split()}
    assert beam_text("-m", folder, wav, "--lm", "default") == own


def test_the_lm_and_weights_that_reach_the_decoder(folder_with_lm, tmp_path, monkeypatch):
    """The folder's LM with its attrs.json weights unless --alpha/--beta are given; another --lm file with the
    defaults (0.5, 1.0), not the folder's weights; --lm none: beam search without an LM; greedy without --beam.
    evaluate resolves them the same way."""
    library = importlib.import_module("w2v2cli.transcribe")  # the module: the package exports a function so named
    folder, wav = folder_with_lm
    received = []

    class Recording(BeamDecoder):
        def __init__(self, vocab, frame_seconds, beam_width, lm_path, alpha, beta, *args):
            received.append((lm_path, alpha, beta))
            super().__init__(vocab, frame_seconds, beam_width, lm_path, alpha, beta, *args)

    monkeypatch.setattr(library, "BeamDecoder", Recording)
    other = tmp_path / "other.arpa"
    write_arpa(["HELLO WORLD"], other)
    own = folder / "language_model" / "3gram.arpa"
    for args, expected in [(["--beam"], (own, 2.0, 3.0)), (["--beam", "--alpha", "0.1"], (own, 0.1, 3.0)),
                           (["--hotword", "CAT", "--beta", "0"], (own, 2.0, 0.0)), (["--lm", other], (other, 0.5, 1.0)),
                           (["--beam", "--lm", "none"], (None, 0.5, 1.0)), ([], None)]:
        beam_text("-m", folder, wav, *args)
        assert (received.pop() if received else None) == expected, args
    (tmp_path / "a.txt").write_text("THE CAT\n")
    result = run_cli("evaluate", "-m", folder, "--data", tmp_path, "--beam", "--json")
    assert result.returncode == 0, result.stderr
    assert received == [(own, 2.0, 3.0)]


def test_model_lm_problems_are_one_line(folder_with_lm, tmp_path):
    """--lm default for a model without its own LM; a language_model/ with two LM files; a KenLM binary without
    KenLM installed: each one line, nothing on stdout."""
    from w2v2cli import build_model, preset, save_model

    folder, wav = folder_with_lm
    native = save_model(build_model(preset("tiny", vocab_size=len(VOCAB)), VOCAB), tmp_path / "m.safetensors")
    cases = [(["-m", native, "--lm", "default"], 2, "--lm default: this model has no word language model")]
    write_arpa(TEXT, folder / "language_model" / "other.arpa")
    cases.append((["-m", folder, "--beam"], 4, "holds one ARPA or KenLM file"))
    for args, code, message in cases:
        result = run_cli("transcribe", *args, wav, "-q")
        assert (result.returncode, result.stdout) == (code, ""), (args, result.stderr)
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert run_cli("transcribe", "-m", folder, wav, "-q").returncode == 0  # greedy never reads the LM folder
    (folder / "language_model" / "other.arpa").unlink()
    if importlib.util.find_spec("kenlm") is None:
        (folder / "language_model" / "3gram.arpa").rename(folder / "language_model" / "3gram.bin")
        result = run_cli("transcribe", "-m", folder, wav, "--beam", "-q")
        assert result.returncode == 2 and result.stderr.count("\n") == 1
        assert "without KenLM only ARPA files" in result.stderr and "--lm none" in result.stderr


def test_info_lists_a_folders_own_language_model(folder_with_lm):
    folder, _ = folder_with_lm
    described = json.loads(run_cli("info", folder, "--json").stdout)["language_model"]
    assert described["file"] == str(folder / "language_model" / "3gram.arpa")
    assert (described["alpha"], described["beta"]) == (2.0, 3.0) and len(described["ngrams"]) == 3
    assert "3gram.arpa" in run_cli("info", folder).stdout
