"""`w2v2 info MODEL`: what a model file holds."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import hub
from ..lm import arpa_counts, model_language_model
from ..summary import describe_model
from . import app
from .common import LANGUAGE, open_model


@app.command()
def info(
    model: str = typer.Argument(None, help="A w2v2 .safetensors/.pt model file, a Hugging Face model folder, a "
                                "name from `w2v2 models` or a Hub repo id org/name or org/name@revision (default: "
                                f"the default model, {hub.DEFAULT_MODEL}, if it is cached; nothing is downloaded "
                                "for it)."),
    language: str = LANGUAGE,
    as_json: bool = typer.Option(False, "--json", help="Print the description as JSON."),
):
    """Show a model's architecture, parameter counts, config and vocabulary. Without MODEL: which model transcribe,
    align and evaluate use by default, and whether it is cached (described if it is)."""
    default_path = hub.cached(hub.DEFAULT_MODEL)  # from the cache only: no request, no download
    if model is None:
        # Works offline: the default model is described from the cache or not at all, never downloaded here.
        if default_path is None:
            _print_default(_default_model(None), as_json)
            return
        model = str(default_path)
    path, loaded = open_model(model, language=language)
    described = describe_model(loaded, path)
    if path == default_path:
        described["default_model"] = _default_model(path)
    own = model_language_model(path)
    if own is not None:
        described["language_model"] = {"file": str(own.path), "ngrams": arpa_counts(own.path) if own.is_arpa else None,
                                       "alpha": own.alpha, "beta": own.beta, "use": "--beam (or --lm default)"}
    if as_json:
        print(json.dumps(described, indent=2, ensure_ascii=False))
        return
    render(described, Console())


def _default_model(path) -> dict:
    entry = hub.MODELS[hub.DEFAULT_MODEL]
    return {"name": entry.name, "repo_id": entry.repo_id, "revision": entry.revision, "cached": path is not None,
            "download_mb": entry.download_mb}


def _print_default(default: dict, as_json: bool) -> None:
    """What `w2v2 info` says when the default model is not in the cache."""
    if as_json:
        print(json.dumps({"default_model": default}, indent=2))
        return
    Console(highlight=False).print(
        f"The default model is {default['name']} ({default['repo_id']}), not downloaded yet. "
        f"`w2v2 download {default['name']}` fetches it (about {default['download_mb']} MB; transcribe, align and "
        "evaluate fetch it on first use); `w2v2 info embedded` describes the offline demo model.", markup=False)


def render(described: dict, console: Console) -> None:
    summary = Table(title=Text(described["source"], style="bold"), show_header=False, title_justify="left")
    summary.add_column(style="cyan")
    summary.add_column(overflow="fold")
    params = described["parameters"]
    default = described.get("default_model")
    if default:
        summary.add_row("default model", f"{default['name']} ({default['repo_id']}): what transcribe, align and "
                        "evaluate use without --model")
    summary.add_row("format", described["format"])
    summary.add_row("family", described["family"])
    languages = described.get("languages")
    if languages:
        shown = ", ".join(languages[:20]) + (f", ... ({len(languages)} in all)" if len(languages) > 20 else "")
        summary.add_row("languages", Text(f"{shown}: choose one with --language"))
    summary.add_row("architecture", described["architecture"])
    summary.add_row("parameters", f"{params['total']:,} ({params['total'] / 1e6:.1f}M)")
    for part in ("feature_encoder", "feature_projection", "transformer", "ctc_head"):
        summary.add_row(f"  {part.replace('_', ' ')}", f"{params[part]:,}")
    frames = described["frames"]
    summary.add_row(
        "frames", f"{frames['frame_rate_hz']:g} per second (hop {frames['hop_samples']}, "
        f"receptive field {frames['receptive_field_samples']} samples)"
    )
    vocab = described["vocab"]
    if vocab is None:
        summary.add_row("CTC head", "none (encoder only)")
    else:
        summary.add_row("vocabulary", f"{vocab['size']} tokens, blank {vocab['tokens'][vocab['blank']]!r} "
                        f"(id {vocab['blank']}), word delimiter {vocab['word_delimiter']!r}")
        summary.add_row("tokens", " ".join(vocab["tokens"]))
    lm = described.get("language_model")
    if lm:
        sizes = (", ".join(f"{n:,} {k + 1}-grams" for k, n in enumerate(lm["ngrams"])) if lm["ngrams"]
                 else "KenLM binary")
        weights = "".join(f", {k} {lm[k]:g}" for k in ("alpha", "beta") if lm[k] is not None)
        summary.add_row("word language model", f"{lm['file']}: {sizes}{weights}; beam search with it: {lm['use']}")
    console.print(summary)

    provenance = described.get("provenance")
    if provenance:
        trained = Table(title="what it is and how it was trained", show_header=False, title_justify="left")
        trained.add_column(style="cyan")
        trained.add_column(overflow="fold")
        for key, value in provenance.items():
            if isinstance(value, list):  # stages, results: one line per entry
                value = "\n".join(", ".join(f"{k} {v}" for k, v in entry.items()) if isinstance(entry, dict)
                                  else str(entry) for entry in value)
            trained.add_row(key.replace("_", " "), str(value))
        console.print(trained)

    config = Table(title="config", title_justify="left")
    config.add_column("field", style="cyan")
    config.add_column("value")
    for key, value in described["config"].items():
        if key == "conv_layers":
            value = " ".join(f"({c},{k},{s})" for c, k, s in value)
        config.add_row(key, str(value))
    console.print(config)
