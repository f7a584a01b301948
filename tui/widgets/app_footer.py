"""The app's footer: Textual's, rebuilt only when the keys it shows change; and each dialog's.

Textual's Footer rebuilds all its keys whenever the screen's bindings are refreshed: a focus change, a pane's
busy flag, a key that changes what an action allows. Sending a chat message refreshed them about six times, and each
rebuild (mount, styles, layout) took ~5-10 ms of the CPU that the model's decoding threads were using.

A Textual footer shows the keys of its own screen. A dialog (a modal screen) composes none, so the pane's footer
showed through it, with keys that did nothing there (F7 Merge under Settings) or something else (Ctrl+S saved the
settings, not Start). The app's footer gives each dialog one of its own as the dialog opens: the dialog's keys.
"""

from __future__ import annotations

from textual.screen import Screen, SystemModalScreen
from textual.widgets import Footer

Shown = tuple[tuple[str, str, str, bool, str, str], ...]


def shown_keys(screen: Screen) -> Shown:
    """What a footer on ``screen`` shows: each shown binding's key, action, label, state, tooltip and group."""
    return tuple((binding.key, binding.action, binding.description, enabled, tooltip,
                  binding.group.description if binding.group else "")
                 for _node, binding, enabled, tooltip in screen.active_bindings.values()
                 if binding.show or binding.key == screen.app.COMMAND_PALETTE_BINDING)


class AppFooter(Footer):
    def __init__(self) -> None:
        super().__init__()
        self._shown: Shown | None = None  # what the last rebuild showed

    def on_mount(self) -> None:  # after Footer's own (Textual calls each class's handler)
        if not self.screen.is_modal:  # the app's footer (a dialog's gives no footers)
            # Immediate: the dialog has its footer before its first frame.
            self.app.screen_change_signal.subscribe(self, self._screen_changed, immediate=True)

    def on_unmount(self) -> None:
        self.app.screen_change_signal.unsubscribe(self)

    def _screen_changed(self, screen: Screen) -> None:
        # Not the command palette's: it draws at the top and its keys are its own list's.
        if screen.is_modal and not isinstance(screen, SystemModalScreen) and not screen.query(Footer):
            screen.mount(AppFooter())

    def bindings_changed(self, screen: Screen) -> None:
        shown = shown_keys(screen)
        if self._bindings_ready and shown == self._shown:
            return
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            self._shown = shown  # Textual rebuilds now (without the app's focus it waits for the next change)
        super().bindings_changed(screen)
