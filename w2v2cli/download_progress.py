"""Progress of Hub downloads (hub.py) as Rich bars on stderr, through the tqdm class huggingface_hub takes.

huggingface_hub reports progress by creating tqdm bars (`tqdm_class=`): a count of files per snapshot, and byte
bars. `DownloadProgress` hands it tqdm classes whose bars count as tqdm does but draw nothing themselves; each is a
task of one Rich Progress on stderr, live only inside the `with` block of one download, so it is gone before the
command's own progress starts (huggingface_hub never closes some of its bars). Nothing goes to stdout.

On a terminal the bars are transient; a download that moved bytes then leaves one line on stderr saying how much
came. When stderr is not a terminal (a log, a pipe) there are no bars, only that line. `enabled=False` (--quiet):
nothing at all.

Usage:
    with DownloadProgress(enabled=True, label="facebook/wav2vec2-base-960h") as bars:
        snapshot_download(..., tqdm_class=bars.tqdm_class())
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field

from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, Progress, ProgressColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text
from tqdm.std import tqdm as std_tqdm


@dataclass
class _Group:
    """The bars of one huggingface_hub call."""

    bars: list = field(default_factory=list)
    retired: bool = False  # a later call has started: hidden


def stderr_console() -> Console:
    """Where the bars and the closing line go (tests put a terminal of their own here)."""
    return Console(stderr=True, highlight=False)


class _Amount(ProgressColumn):
    """Bytes as sizes (12.3/378.0 MB), anything else as counts (3/5)."""

    def render(self, task) -> Text:
        done, total = task.completed, task.total
        if task.fields.get("unit") == "B":
            return Text(f"{decimal(int(done))}/{decimal(int(total))}" if total else decimal(int(done)))
        return Text(f"{int(done)}/{int(total)}" if total else f"{int(done)}")


class DownloadProgress:
    """One Rich Progress on stderr for one download, and the tqdm classes that feed it."""

    def __init__(self, enabled: bool, label: str):
        self.enabled, self.label = enabled, label
        self.console = stderr_console()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), _Amount(),
                                 TimeRemainingColumn(), console=self.console, transient=True,
                                 disable=not (enabled and self.console.is_terminal))
        self._groups: list[_Group] = []  # the bars of each tqdm class handed out (one per Hub call)
        self._lock = threading.Lock()

    def __enter__(self) -> DownloadProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()
        moved = self.bytes_downloaded()
        if self.enabled and moved and exc[0] is None:
            self.console.print(f"{self.label}: downloaded {decimal(moved)} into the Hugging Face cache",
                               markup=False)

    def bytes_downloaded(self) -> int:
        """Bytes fetched: per Hub call its largest byte count (a snapshot counts the same bytes on two bars, as
        received and as written), summed over calls."""
        with self._lock:
            return int(sum(max((bar.n for bar in group.bars if bar.unit == "B"), default=0)
                           for group in self._groups))

    def tqdm_class(self) -> type[std_tqdm]:
        """A tqdm class for one huggingface_hub call (snapshot_download, hf_hub_download). The bars of the calls
        before it are put away: only the current call's are shown."""
        owner, group = self, _Group()
        with self._lock:
            for done in self._groups:
                done.retired = True
                for bar in done.bars:
                    self.progress.update(bar._task, visible=False)
            self._groups.append(group)

        class RichBar(std_tqdm):
            monitor_interval = 0  # no tqdm monitor thread: nothing here is drawn by tqdm

            def __init__(self, *args, **kwargs):
                kwargs.pop("name", None)  # huggingface_hub's own keyword
                kwargs.update(gui=True, disable=False, file=sys.stderr)  # gui: tqdm draws nothing, display() does
                super().__init__(*args, **kwargs)
                self._task = owner.progress.add_task(self.desc or "", total=self.total or None, completed=self.n,
                                                     visible=False, unit=self.unit)
                with owner._lock:
                    group.bars.append(self)

            def display(self, *_, **__):
                if hasattr(self, "_task"):  # not before __init__ has made the task
                    owner.progress.update(self._task, description=self.desc or "", completed=self.n,
                                          total=self.total or None,
                                          visible=not group.retired and bool(self.total or self.n))

            def clear(self, *_, **__):
                pass

            def close(self):
                if not self.disable:
                    self.display()
                super().close()

            def reset(self, total=None):
                super().reset(total=total)
                self.display()

        return RichBar
