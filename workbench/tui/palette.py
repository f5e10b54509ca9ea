"""The command palette's workbench commands (ctrl+p): the app's own plus those of the current screen.

Each screen offers ``palette_commands() -> list[(name, callback, help)]`` (what makes sense there: stop
the selected run, open a conversation...), the way posting's provider asks its screen.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from workbench.tui.navigation import OpenRunsTab

if TYPE_CHECKING:
    from workbench.tui.app import WorkbenchApp

Command = tuple[str, Callable[[], object], str]


class WorkbenchCommands(Provider):
    @property
    def commands(self) -> list[Command]:
        app = cast("WorkbenchApp", self.app)
        out: list[Command] = [
            ("go: Runs", partial(app.switch_mode, "runs"), "Runs: status, metrics, log, samples, checkpoints"),
            ("go: Chat", partial(app.switch_mode, "chat"), "Chat with the base, adapters and checkpoints"),
            ("go: Eval", partial(app.switch_mode, "eval"), "Sweep checkpoints: forgetting curve and verdict"),
            ("keys: Show the keys of this screen", app.action_toggle_keys, "This screen's own keys first (F10, ?)"),
        ]
        from workbench.tui.screens.runs import TABS

        # Every tab of the Runs screen, from any screen: the palette is where a forgotten key is found.
        out += [(f"go: Runs › {title} tab", partial(app.post_message, OpenRunsTab(pane)),
                 f"The selected run's {title.lower()}") for pane, title, _ in TABS]
        screen_commands = getattr(self.screen, "palette_commands", None)
        if screen_commands is not None:
            out.extend(screen_commands())
        return out

    async def discover(self) -> Hits:
        for name, callback, help_text in self.commands:
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self.commands:
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
