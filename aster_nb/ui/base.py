"""What every view shares: a run, a bus subscription, a throttled redraw, errors kept and shown.

Event handlers only mark the view dirty; the throttle redraws from the run's current state.
Exceptions from redraws, button callbacks and tasks the view started land in an
:class:`ErrorSink`: kept in ``view.errors`` and shown in an error area.
"""

from __future__ import annotations

import asyncio
import html
import traceback
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..events import Event
from .frontend import style_tag
from .throttle import Throttle

if TYPE_CHECKING:
    from ..run import Run


class ErrorSink:
    """Exceptions a view (or a whole dashboard) met, kept in order and shown in ``widget``.

    A repeat of the previous error (same type and message) is counted, not stored again,
    so a redraw failing every interval does not grow without bound.

    Args:
        shown: how many of the latest errors the widget lists.
    """

    def __init__(self, *, shown: int = 3) -> None:
        self.errors: list[BaseException] = []
        self.repeats: list[int] = []
        self.shown = shown
        self.widget = w.HTML(value="")
        self.widget.add_class("aster-errors")
        self._listeners: list[Callable[[BaseException], None]] = []

    def report(self, exc: BaseException, where: str) -> None:
        """Keep ``exc`` (raised while doing ``where``) and show it."""
        last = self.errors[-1] if self.errors else None
        if last is not None and type(last) is type(exc) and str(last) == str(exc):
            self.repeats[-1] += 1
        else:
            exc.add_note(f"aster_nb.ui: while {where}")
            self.errors.append(exc)
            self.repeats.append(1)
        lines = []
        for e, n in zip(self.errors[-self.shown :], self.repeats[-self.shown :], strict=True):
            tail = "".join(traceback.format_exception_only(e)).strip()
            lines.append(html.escape(tail) + (f" (x{n})" if n > 1 else ""))
        self.widget.value = "<br>".join(lines)
        for fn in list(self._listeners):
            fn(exc)

    def listen(self, fn: Callable[[BaseException], None]) -> None:
        """Call ``fn`` with every new report."""
        self._listeners.append(fn)

    def clear(self) -> None:
        self.errors.clear()
        self.repeats.clear()
        self.widget.value = ""


class TaskSet:
    """Tasks a view started, strongly referenced until done; their exceptions are reported.

    Args:
        sink: where exceptions go.
        on_done: called after each task finishes (e.g. mark the view dirty).
    """

    def __init__(self, sink: ErrorSink, *, on_done: Callable[[], None] | None = None) -> None:
        self.sink = sink
        self.on_done = on_done
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"aster_nb.ui {name}")
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def running(self, name: str) -> bool:
        return any(t.get_name() == f"aster_nb.ui {name}" and not t.done() for t in self.tasks)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.sink.report(exc, task.get_name().removeprefix("aster_nb.ui "))
        if self.on_done is not None:
            self.on_done()


_STYLE: w.HTML | None = None


def style() -> w.HTML:
    """One shared, invisible HTML widget carrying ``widgets/dashboard.css``."""
    global _STYLE
    if _STYLE is None or _STYLE.comm is None:  # closed widgets cannot be shown again
        _STYLE = w.HTML(value=style_tag(), layout=w.Layout(height="0px", margin="0px"))
    return _STYLE


class LiveView:
    """Mixin for the views: call :meth:`_live` in ``__init__`` after the widget is built.

    Subclasses implement ``_draw()`` (read the run, update widgets in place) and list the
    event types they follow in ``_follows``.
    """

    run: Run
    sink: ErrorSink
    throttle: Throttle
    _follows: tuple[type[Event], ...] = (Event,)

    def _live(self, run: Run, *, interval: float, errors: ErrorSink | None) -> ErrorSink:
        if not hasattr(run, "bus") or not hasattr(run, "store"):
            raise TypeError(f"expected an aster_nb Run, got {type(run).__name__}")
        self.run = run
        self.sink = errors if errors is not None else ErrorSink()
        self.throttle = Throttle(
            self._draw, interval=interval, on_error=lambda e: self.sink.report(e, "redrawing")
        )
        self._unsubscribe: Callable[[], None] | None = run.bus.subscribe(self._on_event)
        return self.sink

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions from redraws and from tasks this view started, oldest first."""
        return self.sink.errors

    def _on_event(self, e: Event) -> None:
        # runs inside the bus's emit, under the run: O(1), never a redraw
        if isinstance(e, self._follows):
            self.throttle.mark()

    def _draw(self) -> None:
        raise NotImplementedError

    def refresh(self) -> None:
        """Redraw now from the run's current state."""
        self.throttle.mark()
        self.throttle.flush()

    def _guard(self, fn: Callable[..., None], where: str) -> Callable[..., None]:
        """``fn`` for a widget callback: its exception is reported, not lost in a log."""

        def call(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as e:
                self.sink.report(e, where)

        return call

    def close(self) -> None:
        """Unsubscribe from the run's events, cancel a pending redraw, close the widget."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.throttle.close()
        super().close()  # type: ignore[misc]  # the ipywidgets widget this is mixed into


class ReplayView(LiveView):
    """A view that can show the past: :meth:`show` ``upto=t`` draws it as after evaluation
    ``t`` and stops following events (the past does not change); ``upto=None`` follows
    the run again."""

    upto: int | None = None

    def show(self, *, upto: int | None) -> None:
        """Draw as after evaluation ``upto`` (``None``: now, following the run)."""
        if upto is not None and upto < 0:
            raise ValueError(f"upto must be >= 0 evaluations or None, got {upto}")
        self.upto = upto
        self.throttle.mark()
