"""Command palette provider: every key of the current screen and the app, by description."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.command import DiscoveryHit, Hit, Hits, Provider

from dashboard.keymap import APP_KEYS, Key, key_label, visible


class KeyCommands(Provider):
    """Offers the same actions as the keys, so the palette can never drift from the bindings."""

    def _keys(self) -> list[tuple[Key, bool]]:
        read_only = bool(getattr(self.app, "read_only", True))
        screen_keys: tuple[Key, ...] = getattr(self.screen, "KEYS", ())
        return [(k, False) for k in visible(screen_keys, read_only)] + [
            (k, True) for k in visible(APP_KEYS, read_only)
        ]

    def _run(self, key: Key, on_app: bool) -> Callable[[], Awaitable[object]]:
        target = self.app if on_app else self.screen

        async def run() -> None:
            await target.run_action(key.action)

        return run

    async def discover(self) -> Hits:
        """All commands, when nothing is typed yet."""
        for key, on_app in self._keys():
            yield DiscoveryHit(
                key.description,
                self._run(key, on_app),
                help=f"key: {key_label(key.keys)}",
            )

    async def search(self, query: str) -> Hits:
        """Commands whose description matches what was typed."""
        matcher = self.matcher(query)
        for key, on_app in self._keys():
            label = key.description
            score = matcher.match(label)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(label),
                    self._run(key, on_app),
                    help=f"key: {key_label(key.keys)}",
                )
