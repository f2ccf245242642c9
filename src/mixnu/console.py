"""Console output shared by the stages: a stderr console and rich progress bars with rates.

Progress goes to stderr so that `--json -` on stdout stays machine-readable.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

stderr = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Items per second, with the unit named (`tok/s`, `judgments/s`, `tensors/s`)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text(f"? {self.unit}/s", style="cyan")
        return Text(f"{speed:,.1f} {self.unit}/s", style="cyan")


def progress(quiet: bool = False, unit: str = "it") -> Progress:
    """A rich progress bar showing count, rate (`unit`/s), elapsed and remaining time.

    Use as `with progress(quiet, "tok") as p: t = p.add_task("training", total=n); p.advance(t, k)`.
    With `quiet=True` nothing is drawn.
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        disable=quiet,
    )
