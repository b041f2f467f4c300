"""What `pretrain` and `finetune` share: errors and warnings worded with the command's options, and the rendering
of training events (Rich live progress on a terminal, one plain line per log interval otherwise; everything on
stderr; only rank 0 receives events)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import ConfigError, TrainingError

# Figures shown per log line, in this order, with their format.
SHOWN = (
    ("loss", "loss", ".3f"), ("accuracy", "acc", ".3f"), ("wer", "wer", ".3f"),
    ("code_perplexity", "code_ppl", ".1f"), ("context_cosine", "ctx_cos", ".3f"), ("temperature", "temp", ".3f"),
    ("lr", "lr", ".2e"),
    ("grad_norm", "gnorm", ".2f"), ("audio_seconds_per_second", "audio_s/s", ".1f"), ("mfu", "mfu", ".1%"),
    ("gpu_memory_gb", "gpu_gb", ".1f"),
)


def option_names(ctx, **extra: str) -> dict[str, str]:
    """Setting (field or argument name) -> the command's option for it: each option of the command, plus
    `extra` for settings an option covers under another name (temp_start -> --latent-temp)."""
    names = {param.name: next((o for o in param.opts if o.startswith("--")), param.opts[0])
             for param in ctx.command.params if param.opts}
    return {**names, **extra}


def with_options(message: str, options: Mapping[str, str]) -> str:
    """`message` with the settings it names worded as options: the library says "max_tokens (1000)", the user
    typed --max-tokens. A name with an underscore is a setting wherever it stands as a word of its own; a
    one-word name (init, lr) only where it opens the message or a clause (after ": " or "; "), because such
    words also occur as plain words and as values (a data folder called train). Never inside a path."""
    if not options:
        return message
    names = "|".join(sorted(map(re.escape, options), key=len, reverse=True))
    word = rf"(?<![\w./\\-])({names})(?![\w/\\-]|\.\w)"

    def swap(match: re.Match) -> str:
        name = match.group(1)
        opens = match.start() == 0 or message[max(0, match.start() - 2):match.start()] in (": ", "; ")
        return options[name] if "_" in name or opens else name

    return re.sub(word, swap, message)


@contextlib.contextmanager
def errors_with_options(options: Mapping[str, str]):
    """Re-raises the configuration and training errors raised inside with their settings worded as options."""
    try:
        yield
    except (ConfigError, TrainingError) as exc:
        raise type(exc)(with_options(str(exc), options)) from exc


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def tensorboard_available() -> None:
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard") from None


class TrainingDisplay:
    def __init__(self, quiet: bool = False, options: Mapping[str, str] | None = None):
        self.err = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.options = options or {}  # warnings and skip reasons name settings: worded as these options
        self.live = not quiet and sys.stderr.isatty()
        self.progress: Progress | None = None
        self.task = None
        self.skipped_shown = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()

    def line(self, text: str) -> None:
        if not self.quiet:
            (self.progress.console if self.progress else self.err).print(text, markup=False, soft_wrap=True)

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "start":
            resumed = f", resumed from {event['resumed_from']}" if event["resumed_from"] else ""
            left_out = f" ({event['left_out']} shorter than --min-sample-size left out)" if event["left_out"] else ""
            self.line(
                f"training {event['trainable'] / 1e6:.1f}M of {event['parameters'] / 1e6:.1f}M parameters on "
                f"{event['utterances']} utterances, {event['hours']:.2f} h{left_out}; {event['batches_per_epoch']} "
                f"batches per epoch and process; {event['world_size']} x {event['device']}, {event['precision']}"
                f"{resumed}"
            )
            if self.live:
                self.progress = Progress(
                    TextColumn("update"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.description}"), console=self.err, transient=False,
                )
                self.progress.start()
                self.task = self.progress.add_task("", total=event["max_updates"], completed=event["update"])
        elif kind == "log":
            figures = "  ".join(f"{label} {event[key]:{fmt}}" for key, label, fmt in SHOWN
                                if isinstance(event.get(key), (int, float)))
            if self.progress is not None:
                self.progress.update(self.task, completed=event["update"], description=figures)
            else:
                self.line(f"update {event['update']}  {figures}")
        elif kind == "valid":
            self.err.print(validation_table(event["results"], event["update"])) if not self.quiet else None
        elif kind == "checkpoint":
            if not self.live:
                self.line(f"saved {event['path']}")
        elif kind in ("skipped_file", "data_problem"):
            # Every skip is counted in metrics.jsonl; the terminal names the first few.
            self.skipped_shown += 1
            if self.skipped_shown <= 20:
                what = event.get("item") or event.get("problem")
                reason = f": {with_options(event['reason'], self.options)}" if event.get("reason") else ""
                self.line(f"warning: skipped {what}{reason}")
            elif self.skipped_shown == 21:
                self.line("warning: more files skipped; their count is in metrics.jsonl")
        elif kind == "nonfinite":
            ids = ", ".join(event["ids"][:8]) + (" ..." if len(event["ids"]) > 8 else "")
            self.line(f"warning: update {event['update']} skipped: non-finite loss {event['loss']:.3g} or gradient "
                      f"norm {event['grad_norm']:.3g}; utterances: {ids}")
        elif kind == "subset":
            self.line(f"training subset: {event['utterances']} utterances, {event['hours']:.3f} h, listed in "
                      f"{event['path']}")
        elif kind == "text_report":
            dropped = event["dropped"]
            what = ", ".join(f"{ch!r} x{n}" for ch, n in list(dropped.items())[:12]) or "nothing"
            origin = "built from the transcripts" if event["new_vocabulary"] else "kept from --init"
            self.line(f"vocabulary: {event['vocab_size']} tokens, {origin}; characters dropped from transcripts: "
                      f"{what}{' ...' if len(dropped) > 12 else ''}")
        elif kind == "warning":
            self.line(f"warning: {with_options(event['message'], self.options)}")


def validation_table(results: list[dict], update: int) -> Table:
    columns = [("loss", ".3f"), ("accuracy", ".3f"), ("wer", ".2%"), ("cer", ".2%"), ("best_wer", ".2%")]
    present = [(k, f) for k, f in columns if any(k in r for r in results)]
    table = Table(title=f"validation at update {update}", title_justify="left")
    table.add_column("set", overflow="fold")
    for extra in ("utterances", "hours"):
        if any(extra in r for r in results):
            table.add_column(extra, justify="right")
    for key, _ in present:
        table.add_column(key, justify="right")
    for r in results:
        row = [r["set"]]
        if "utterances" in r:
            row.append(str(int(r["utterances"])))
        if "hours" in r:
            row.append(f"{r['hours']:.2f}")
        row += [format(r[k], f) if isinstance(r.get(k), (int, float)) else "" for k, f in present]
        table.add_row(*row)
    return table
