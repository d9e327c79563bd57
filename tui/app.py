"""The Almanac TUI: models, runs and predictions, each a mode with its own screen stack."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from tui.data import Data
from tui.screens.model_detail import ModelDetailScreen
from tui.screens.models import ModelsScreen
from tui.screens.predictions import PredictionsScreen
from tui.screens.record import RecordScreen
from tui.screens.runs import RunsScreen

SCREENS = ("models", "runs", "predictions")


class AlmanacApp(App):
    TITLE = "Almanac"
    CSS_PATH = ["app.tcss", "models.tcss", "detail.tcss", "runs.tcss", "predictions.tcss",
                "compare.tcss"]
    MODES = {"models": ModelsScreen, "runs": RunsScreen, "predictions": PredictionsScreen}
    BINDINGS = [
        Binding("1", "show('models')", "Models"),
        Binding("2", "show('runs')", "Runs"),
        Binding("3", "show('predictions')", "Predictions"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, data: Data, *, screen: str = "models", job: str | None = None) -> None:
        super().__init__()
        if screen not in SCREENS:
            raise ValueError(f"screen: {screen!r} is not one of {', '.join(SCREENS)}")
        self.data = data
        self.start_screen = screen
        self.start_job = job
        self.load_errors: list[tuple[str, BaseException | None]] = []

    def on_mount(self) -> None:
        self.switch_mode(self.start_screen)

    def on_unmount(self) -> None:
        self.data.close()

    # -- navigation across screens ----------------------------------------------------------

    async def action_show(self, mode: str) -> None:
        await self.switch_mode(mode)

    def open_model(self, ref: str, *, push: bool = False) -> None:
        """The model's detail on the models screen's stack (or on top of this one)."""
        self.run_worker(self._open_model(ref, push), group="navigate")

    async def _open_model(self, ref: str, push: bool) -> None:
        if not push and self.current_mode != "models":
            await self.switch_mode("models")
        await self.push_screen(ModelDetailScreen(ref))

    def open_predictions(self, job: str) -> None:
        self.run_worker(self._open_predictions(job), group="navigate")

    async def _open_predictions(self, job: str) -> None:
        self.start_job = job  # read if the predictions screen is mounted for the first time
        await self.switch_mode("predictions")
        screen = self.screen
        while not isinstance(screen, PredictionsScreen) and len(self.screen_stack) > 1:
            await self.pop_screen()
            screen = self.screen
        if isinstance(screen, PredictionsScreen) and screen.query_now is not None:
            screen.select_job(job)

    def open_comparison(self, job: str) -> None:
        """The job's candidates compared, on top of the current screen."""
        # plotext and the scoring room load when a comparison first opens, not at start.
        from tui.screens.compare import ComparisonScreen

        self.push_screen(ComparisonScreen(job))

    def open_record(self, record: dict[str, Any]) -> None:
        self.push_screen(RecordScreen(record))

    def report_load_error(self, what: str, error: BaseException | None) -> None:
        self.load_errors.append((what, error))
        self.notify(f"Could not load {what}: {error}", severity="error", timeout=10)

    # -- command palette --------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode in SCREENS:
            yield SystemCommand(f"Show {mode}", f"Switch to the {mode} screen",
                                lambda m=mode: self.run_action(f"show('{m}')"))
        for action, title, help_ in (
            ("refresh", "Refresh", "Reload what this screen shows"),
            ("search", "Search", "Focus the search box"),
            ("clear", "Clear filters", "Clear facets, search and size filters"),
            ("facets", "Toggle facets", "Hide or show the domain and language facets"),
            ("failed", "Failed only", "Show only failed predictions (toggle)"),
            ("model", "Open model", "The model of the current prediction"),
            ("predictions", "Predictions of job", "Cached predictions of the highlighted run"),
            ("base", "Base model", "Open this model's base model"),
            ("compare", "Compare candidates", "The job's candidates: score, speed and cost"),
        ):
            if hasattr(screen, f"action_{action}"):
                yield SystemCommand(title, help_, lambda a=action: screen.run_action(a))


def make_app(catalog_db: Path, predictions: Path, *, screen: str | None = None,
             job: str | None = None) -> AlmanacApp:
    """The app over a home's catalog file and predictions directory (the front door's
    `almanac.paths.Home` knows where they are); shared by `almanac tui` and the tests.
    Opens at `screen`; by default the models, or the predictions when a job is given."""
    screen = screen or ("predictions" if job else "models")
    if screen not in SCREENS:
        raise ValueError(f"screen: {screen!r} is not one of {', '.join(SCREENS)}")
    return AlmanacApp(Data(Path(catalog_db), Path(predictions)), screen=screen, job=job)
