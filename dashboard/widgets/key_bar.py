"""``KeyBar``: the bottom line of every screen, the keys the screen offers now (``n Next  /
Filter  r Retry …``) and the command palette's key on the right.

One widget that draws one line of text. Textual's ``Footer`` builds a widget per key and
builds them again whenever the bindings change (every screen switch and focus change); each of
those widgets stays referenced by a watcher on the footer, so a dashboard left open for hours
grew by the keys of every screen it ever showed (found by the soak run's tracemalloc twin).
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.screen import Screen
from textual.widget import Widget


class KeyBar(Widget, can_focus=False):
    """The keys of the screen it is on, redrawn when its bindings change."""

    COMPONENT_CLASSES = {"key-bar--key", "key-bar--description", "key-bar--palette"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        width: 1fr;
        color: $footer-foreground;
        background: $footer-background;
        .key-bar--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        .key-bar--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        .key-bar--palette {
            color: $foreground 20%;
        }
    }
    """

    def on_mount(self) -> None:
        """Follow the screen's bindings."""
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        """Stop following them."""
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if self.is_attached and screen is self.screen:
            self.refresh()

    def keys(self) -> list[tuple[str, str, bool]]:
        """``(key as shown, description, enabled)`` for each shown binding of the screen, one
        per action (the first key bound to it); the command palette's key is not among them."""
        palette = self.app.COMMAND_PALETTE_BINDING
        seen: set[str] = set()
        shown: list[tuple[str, str, bool]] = []
        for key, (_, binding, enabled, _) in self.screen.active_bindings.items():
            if not binding.show or key == palette or binding.action in seen:
                continue
            seen.add(binding.action)
            shown.append((self.app.get_key_display(binding), binding.description, enabled))
        return shown

    def _palette(self) -> Text | None:
        """``▏^p palette`` while the command palette is on and bound, else None."""
        app = self.app
        if not app.ENABLE_COMMAND_PALETTE:
            return None
        bound = self.screen.active_bindings.get(app.COMMAND_PALETTE_BINDING)
        if bound is None:
            return None
        binding = bound[1]
        text = Text("▏", style=self.get_component_rich_style("key-bar--palette"))
        text.append(f"{app.get_key_display(binding)} ", self._key_style())
        text.append(f"{binding.description} ", self._description_style())
        return text

    def _key_style(self) -> Style:
        return self.get_component_rich_style("key-bar--key")

    def _description_style(self) -> Style:
        return self.get_component_rich_style("key-bar--description")

    def render(self) -> Text:
        """The keys, cut at the width so the palette's key keeps its place on the right."""
        dim = Style(dim=True)
        line = Text(no_wrap=True, overflow="ellipsis", end="")
        for key, description, enabled in self.keys():
            line.append(f" {key} ", self._key_style() + (Style() if enabled else dim))
            line.append(
                f"{description} ", self._description_style() + (Style() if enabled else dim)
            )
        palette = self._palette()
        width = self.size.width
        if palette is None or width <= 0:
            return line
        room = max(width - cell_len(palette.plain), 0)
        line.truncate(room, overflow="ellipsis", pad=True)
        return line + palette
