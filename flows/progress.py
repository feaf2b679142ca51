"""What the user sees on the terminal while stages run: one line per stage, a bar for training."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from corpus2vec.flows import events

_STAGE_TITLES = {
    "tokenize": "ingest + tokenize (Spark)",
    "count": "count vocabulary (Spark)",
    "pairs": "subsample + pairs + negatives (Spark)",
    "train": "train SGNS (torchrun)",
    "evaluate": "evaluate",
    "publish": "gate + publish",
}


class StageProgress:
    """Listens to :mod:`corpus2vec.flows.events` and renders stage lines and the training bar on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started: dict[str, float] = {}
        self.progress: Progress | None = None
        self.bar: TaskID | None = None

    def __enter__(self) -> StageProgress:
        events.add_listener(self.handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        events.remove_listener(self.handle)
        self._close_bar()

    def training_callback(self) -> events.Listener:
        """A callback for ``launch_training(on_progress=...)`` when no flow emits events."""
        return lambda progress: self.handle({"kind": "progress", "stage": "train", **progress})

    def handle(self, event: dict[str, Any]) -> None:
        """Render one event."""
        stage, kind = event["stage"], event["kind"]
        if kind == "start":
            self.started[stage] = time.monotonic()
            self.console.print(f"[bold]▶ {_STAGE_TITLES.get(stage, stage)}[/]")
        elif kind == "done":
            self._close_bar()
            seconds = time.monotonic() - self.started.get(stage, time.monotonic())
            facts = ", ".join(f"{k}={_fmt(v)}" for k, v in event.items() if k not in ("kind", "stage"))
            self.console.print(f"  [green]✓[/] {stage} in {seconds:.1f}s  {facts}")
        elif kind == "progress":
            self._show_training(event)

    def _show_training(self, event: dict[str, Any]) -> None:
        total = event.get("total_pairs") or event.get("total")
        done = event.get("pairs") or event.get("pairs_done") or 0
        if self.progress is None:
            self.progress = Progress(
                TextColumn("  training"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.bar = self.progress.add_task("train", total=total, stats="")
        stats = f"{_fmt(event.get('pairs_per_s'))} pairs/s  loss {_fmt(event.get('loss'))}  lr {_fmt(event.get('lr'))}"
        assert self.bar is not None
        self.progress.update(self.bar, completed=done, total=total, stats=stats)

    def _close_bar(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.bar = None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if abs(value) >= 1e5:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
