"""Captures of the TUI's screens as SVG and plain text, for the README and for
reviewing snapshots without a browser. Test tooling: not part of the shipped app.

From the repository root, over a home with a catalog (and runs, for their screens):

    python -m tests.tui_capture HOME OUT_DIR    # writes OUT_DIR/<screen>.svg and .txt

Also the helpers the TUI tests and bench/tui.py drive the app with. They reach into
a few private Textual attributes (the compositor, the driver, the screen's dirty
set): Textual has no public text export, no way to send a key without Pilot's idle
waits, and no public "painted" flag. Nothing in the app itself depends on them.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from textual import events
from textual.app import App
from textual.pilot import Pilot

SIZE = (100, 30)
# What each capture shows: the screen to open and the keys pressed before capturing.
SHOTS: dict[str, tuple[str, Sequence[str]]] = {
    "models": ("models", ()),
    "model-detail": ("models", ("slash", *"sqlcoder", "enter", "enter")),
    "runs": ("runs", ()),
    "predictions": ("predictions", ()),
    "record": ("predictions", ("enter",)),
}


def screen_text(app: App) -> str:
    """The current screen as plain text, as `App.export_screenshot` renders it for SVG
    (the same compositor call; Textual has no public text export)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system=None, record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens, simplify=True))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def send_key(app: App, key: str, character: str | None = None) -> None:
    """Deliver a key the way the terminal driver does. Pilot.press also waits for the
    process to go idle, which on a busy machine measures the machine, not the app."""
    app._driver.send_message(events.Key(key, character))


def painted(app: App) -> bool:
    """True once the screen has no layout or widget waiting for its next update."""
    screen = app.screen
    return not screen._layout_required and not screen._dirty_widgets


async def settle(pilot: Pilot) -> None:
    """Wait until no screen is loading anything, every message queue of the app and its
    current screen is empty (twice running), and the display has caught up; raise
    TimeoutError after two minutes rather than let a test read a screen mid-change."""
    app = pilot.app
    deadline = time.monotonic() + 120  # a search typed waits for a pause: a timer, not a worker
    quiet_passes = 0
    while time.monotonic() < deadline and quiet_passes < 2:
        await app.workers.wait_for_complete()
        await pilot.pause()
        # A keystroke's edit reaches the screen in hops (Input, then the filter bar, then
        # the screen), each posted while the one before is handled: one pause can return
        # with the last hop still queued, so idle means every queue empty, twice running.
        queued = any(node.message_queue_size for node in (app, *app.screen.walk_children(with_self=True)))
        idle = not queued and not any(getattr(s, "loading_now", False) for s in app.screen_stack) \
            and not any(w.is_running for w in app.workers)
        quiet_passes = quiet_passes + 1 if idle else 0
    if quiet_passes < 2:
        loading = [type(s).__name__ for s in app.screen_stack if getattr(s, "loading_now", False)]
        raise TimeoutError(f"the TUI did not settle in 120 s (loading: {loading or 'none'})")
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


async def capture(home: Path, screen: str, press: Sequence[str] = (),
                  size: tuple[int, int] = SIZE) -> tuple[str, str]:
    from tests.tui_support import tui_app

    app = tui_app(home, screen=screen)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        for key in press:
            await pilot.press(key)
            await settle(pilot)
        return app.export_screenshot(title=f"almanac tui — {screen}"), screen_text(app)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.tui_capture",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("home", type=Path, help="an Almanac home with a catalog")
    parser.add_argument("out", type=Path, help="where the .svg and .txt captures go")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (screen, press) in SHOTS.items():
        svg, text = asyncio.run(capture(args.home, screen, press))
        (args.out / f"{name}.svg").write_text(svg, encoding="utf-8")
        (args.out / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
        print(args.out / f"{name}.svg")


if __name__ == "__main__":
    main()
