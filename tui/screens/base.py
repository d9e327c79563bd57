"""What every screen shares: loading in thread workers without freezing the UI."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from textual.screen import Screen
from textual.worker import Worker, WorkerState

from tui.data import Data

if TYPE_CHECKING:  # the app imports every screen: a runtime import here would be a cycle
    from tui.app import AlmanacApp


class DataScreen(Screen):
    """Runs catalog and cache reads in thread workers and applies their results on the
    UI thread. Each load belongs to a group; a newer load of a group supersedes an
    older one still running (a thread cannot be stopped, but its answer is dropped)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._generation: dict[str, int] = {}
        self._pending: dict[Worker, tuple[str, int, Callable[[Any], None]]] = {}

    @property
    def data(self) -> Data:
        """The home's catalog and cache; screens reach them only through the app."""
        return cast("AlmanacApp", self.app).data

    def load(self, group: str, fetch: Callable[[], Any], apply: Callable[[Any], None]) -> None:
        generation = self._generation.get(group, 0) + 1
        self._generation[group] = generation
        # The load this one supersedes stops its catalog query now rather than finishing
        # it for nothing: on two cores it would slow this one down.
        task = f"{id(self)}/{group}"
        self.data.interrupt(task)
        # The result comes back as a worker state change on the UI thread, not through
        # call_from_thread, which would block a thread forever once the app has exited.
        worker = self.run_worker(lambda: self.data.run_as(task, fetch), thread=True,
                                 group=group, name=group, exit_on_error=False)
        self._pending[worker] = (group, generation, apply)

    def drop(self, group: str) -> None:
        """Forget the load of `group` under way, if any: its answer is dropped and its
        catalog query stopped."""
        self._generation[group] = self._generation.get(group, 0) + 1
        self.data.interrupt(f"{id(self)}/{group}")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        entry = self._pending.pop(event.worker, None)
        if entry is None:
            return
        group, generation, apply = entry
        if self._generation.get(group) != generation:
            return  # superseded by a newer load of the same group
        if event.state == WorkerState.SUCCESS:
            apply(event.worker.result)
        elif event.state == WorkerState.ERROR:
            for widget in self.query("*"):  # no spinner waits for an answer that failed
                widget.loading = False
            self.app.report_load_error(group, event.worker.error)

    @property
    def loading_now(self) -> bool:
        return bool(self._pending)
