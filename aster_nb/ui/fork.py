"""Fork from a clicked program: a button under the archive map's elite panel that calls
``run.fork(program_id)`` and says where the new run lives and how to open it.

Why a panel of its own: forking makes a second run (its own store and sandbox server),
which is slow (the initial program is evaluated first) and can fail on the researcher's
input; the button must show both without blocking the kernel, and hand the new
:class:`~aster_nb.run.Run` back to the notebook (:attr:`ForkPanel.forked`).
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from .base import ErrorSink, TaskSet

if TYPE_CHECKING:
    from ..run import Run


class ForkPanel(w.VBox):
    """ "Fork from this program" for the program shown in the elite panel, then "Start the
    fork" for the run it made.

    Args:
        run: the run to fork from.
        sink: where exceptions go (the map's).
        rounds: rounds "Start the fork" runs (``None``: until stopped).
        overrides: settings every fork takes (``run.fork(id, **overrides)``).
    """

    def __init__(
        self,
        run: Run,
        *,
        sink: ErrorSink,
        rounds: int | None = 1,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.run = run
        self.rounds = rounds
        self.overrides = dict(overrides or {})
        self.program_id: str | None = None
        # every run forked here, oldest first (the notebook's handle on them)
        self.forked: list[Run] = []
        # called with each new fork, e.g. to show a dashboard of it
        self.callbacks: list[Callable[[Run], None]] = []
        self.tasks = TaskSet(sink)
        self.button = w.Button(
            description="fork from this program",
            icon="code-branch",
            disabled=True,
            layout=w.Layout(width="auto"),
        )
        self.button.add_class("aster-fork")
        self.start = w.Button(
            description="start the fork",
            icon="play",
            layout=w.Layout(width="auto", display="none"),
        )
        self.start.add_class("aster-fork-start")
        self.result = w.HTML(value="")
        self.result.add_class("aster-fork-result")
        super().__init__([w.HBox([self.button, self.start]), self.result])
        self.add_class("aster-fork-panel")
        self.button.on_click(lambda _: self._report(self.fork, "forking"))
        self.start.on_click(lambda _: self._report(self.start_fork, "starting the fork"))

    def _report(self, fn: Callable[[], Any], where: str) -> None:
        try:
            fn()
        except Exception as e:
            self.tasks.sink.report(e, where)

    def select(self, program_id: str) -> None:
        """Offer to fork from ``program_id`` (a stored program)."""
        self.program_id = program_id
        self.button.disabled = self.tasks.running("fork")
        self.button.description = f"fork from {program_id[:12]}"

    def fork(self) -> asyncio.Task[Any]:
        """Fork from the selected program in the background; returns the task (its result
        is the new run, also appended to :attr:`forked`)."""
        if self.program_id is None:
            raise ValueError("no program selected: click a cell centre or a program first")
        pid = self.program_id
        self.button.disabled = True
        self.result.value = f"forking from <code>{html.escape(pid)}</code> ..."
        return self.tasks.spawn(self._fork(pid), name="fork")

    async def _fork(self, pid: str) -> Run:
        try:
            child = await self.run.fork(pid, **self.overrides)
        except Exception as e:
            self.result.value = f"fork failed: {html.escape(f'{type(e).__name__}: {e}')}"
            raise
        finally:
            self.button.disabled = self.program_id is None
        self.forked.append(child)
        path = str(child.store.path)
        self.result.value = (
            f"forked from <code>{html.escape(pid)}</code> into "
            f"<code class='aster-fork-path'>{html.escape(path)}</code>; in a cell: "
            "<code>fork = dashboard.forked</code> (this run, live), or later "
            f"<code>fork = await Run.open({html.escape(repr(path))})</code>"
        )
        self.start.layout.display = None
        for fn in list(self.callbacks):
            fn(child)
        return child

    def start_fork(self) -> asyncio.Task[None]:
        """Run the latest fork's rounds in the background (:meth:`Run.start`)."""
        if not self.forked:
            raise ValueError("nothing forked yet: click 'fork from this program' first")
        child = self.forked[-1]
        task = child.start(self.rounds)
        if not self.tasks.running("fork run"):  # a failure of its rounds shows here
            self.tasks.spawn(child.wait(), name="fork run")
        n = "until stopped" if self.rounds is None else f"{self.rounds} round(s)"
        self.result.value += f"<br>the fork runs {n}"
        return task
