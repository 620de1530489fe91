"""Step, Start, Pause/Resume and Stop buttons, each enabled only when it means something."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..events import RoundFinished, RoundStarted, RunStateChanged
from .base import ErrorSink, LiveView, TaskSet, style
from .throttle import DEFAULT_INTERVAL

if TYPE_CHECKING:
    from ..run import Run


class Controls(LiveView, w.VBox):
    """Buttons that drive a run without blocking the kernel.

    Step runs ``await run.step()`` as a task and Stop ``await run.stop()``; both tasks are
    kept in :attr:`tasks` until done and their exceptions go to ``errors``. Start calls
    ``run.start(rounds)``, which never makes a second runner. A second Step while one runs
    is ignored, so a double click makes one round.

    Args:
        run: the run to drive.
        rounds: rounds Start runs (``None``: until stopped).
        interval: minimum seconds between redraws of the buttons' states.
        errors: where exceptions go (a dashboard shares one); a new sink, shown below the
            buttons, if ``None``.
    """

    _follows = (RunStateChanged, RoundStarted, RoundFinished)

    def __init__(
        self,
        run: Run,
        *,
        rounds: int | None = None,
        interval: float = DEFAULT_INTERVAL,
        errors: ErrorSink | None = None,
    ) -> None:
        if rounds is not None and rounds < 1:
            raise ValueError(f"rounds must be >= 1 or None, got {rounds}")
        self.rounds = rounds
        self.step_button = self._button("Step", "aster-btn-step", "step-forward", "One round")
        self.start_button = self._button(
            "Start", "aster-btn-start", "play", "Rounds in the background"
        )
        self.pause_button = self._button("Pause", "aster-btn-pause", "pause", "No new attempts")
        self.stop_button = self._button(
            "Stop", "aster-btn-stop", "stop", "Finish the round, then stop"
        )
        super().__init__()
        sink = self._live(run, interval=interval, errors=errors)
        self.tasks = TaskSet(sink, on_done=self.refresh)
        row = w.HBox([self.step_button, self.start_button, self.pause_button, self.stop_button])
        self.children = (style(), row) if errors is not None else (style(), row, sink.widget)
        self.add_class("aster-controls")
        self.step_button.on_click(self._guard(self._step, "stepping"))
        self.start_button.on_click(self._guard(self._start, "starting"))
        self.pause_button.on_click(self._guard(self._pause, "pausing"))
        self.stop_button.on_click(self._guard(self._stop, "stopping"))
        self._draw()

    @staticmethod
    def _button(text: str, cls: str, icon: str, tooltip: str) -> w.Button:
        b = w.Button(description=text, icon=icon, tooltip=tooltip, layout=w.Layout(width="auto"))
        b.add_class(cls)
        return b

    # -- what the buttons do --------------------------------------------------------------

    def _step(self, _: Any = None) -> None:
        if self.tasks.running("step") or self.tasks.running("stop") or self._background():
            return
        self.tasks.spawn(self.run.step(), name="step")
        self.refresh()

    def _start(self, _: Any = None) -> None:
        if self.tasks.running("step") or self.tasks.running("stop"):
            return
        runner = self.run.start(self.rounds)
        runner.add_done_callback(lambda _: self.throttle.mark())
        self.refresh()

    def _pause(self, _: Any = None) -> None:
        state = self.run.status.state
        if state == "paused":
            self.run.resume()
        elif state == "running" or self._background():  # an idle run: it would block Step
            self.run.pause()
        self.refresh()

    def _stop(self, _: Any = None) -> None:
        if self.tasks.running("stop"):
            return
        self.tasks.spawn(self.run.stop(), name="stop")
        self.refresh()

    # -- state ----------------------------------------------------------------------------

    def _background(self) -> bool:
        return self.run.running

    def _draw(self) -> None:
        state = self.run.status.state
        stepping, stopping = self.tasks.running("step"), self.tasks.running("stop")
        busy = stepping or stopping or self._background() or state in ("running", "paused")
        self.step_button.disabled = busy
        self.start_button.disabled = busy
        paused = state == "paused"
        self.pause_button.description = "Resume" if paused else "Pause"
        self.pause_button.icon = "play" if paused else "pause"
        self.pause_button.disabled = stopping or not (
            paused or state == "running" or self._background()
        )
        self.stop_button.disabled = stopping or not (
            stepping or self._background() or state in ("running", "paused")
        )
