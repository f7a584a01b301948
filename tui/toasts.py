"""Where notifications (Textual's toasts) go over a dialog: never over the widget being worked in.

Over the panes they sit at the top right, under the tab bar and the chat's header (app.tcss): never over the
prompt. A dialog screen has a toast rack of its own, and a large dialog fills the screen at 80x24 and 60x20, so
there is no room beside it: there, the toasts go to the top or the bottom of the screen (above the footer),
whichever leaves more room beside the focused widget (the field being typed in, the A/B prompt, the help text), and
no further than it; with nothing focused, beside the dialog itself. A rack too short for its toasts scrolls to the
newest. The place is chosen as a toast comes and again as the focus moves.
"""

from __future__ import annotations

from textual.app import App, ScreenStackError
from textual.css.query import NoMatches
from textual.events import DescendantFocus
from textual.geometry import Region
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer
from textual.widgets._toast import ToastRack

MIN_ROWS = 3  # a title and a line: the rack is never shorter (it may then cover a row of a full-screen widget)


def kept_clear(screen: Screen) -> Region:
    """What the toasts must not cover: the focused widget, or with none the dialog (all that is not the footer)."""
    if screen.focused is not None and screen.focused.region:
        return screen.focused.region
    regions = [child.region for child in screen.children
               if not isinstance(child, ToastRack | Footer) and child.display and child.region]
    return Region.from_union(regions) if regions else Region()


def place_toasts(screen: Screen) -> None:
    """Puts a dialog screen's toast rack above or below what it must keep clear; the panes' stays where it is."""
    if not isinstance(screen, ModalScreen):
        return
    try:
        rack = screen.get_child_by_type(ToastRack)
    except NoMatches:
        return
    footers = [footer.region.y for footer in screen.query_children(Footer) if footer.display and footer.region]
    floor = min(footers, default=screen.size.height)  # the toasts end above the footer
    clear = kept_clear(screen)
    above, below = (clear.y, floor - clear.bottom) if clear else (floor, 0)
    at_top = above >= below
    # Inline, over app.tcss's rule for every rack (the panes' place: docked at the top, under the tab bar).
    rack.styles.dock = "top" if at_top else "bottom"
    rack.styles.align = ("right", "top" if at_top else "bottom")
    rack.styles.margin = (0, 0, 0 if at_top else screen.size.height - floor, 0)
    rack.styles.max_height = max(above if at_top else below, MIN_ROWS)


class ToastPlacement(App[int]):
    """The app's part: a dialog's toasts move as its focus does (the app's ``notify`` places them as they come)."""

    def place_toasts_later(self) -> None:
        """After the next refresh, when the screen's widgets have their regions."""
        self.call_after_refresh(self._place_toasts)

    def on_descendant_focus(self, _event: DescendantFocus) -> None:
        self.place_toasts_later()

    def _place_toasts(self) -> None:
        try:
            screen = self.screen
        except ScreenStackError:  # the app is closing: its last screen has gone
            return
        place_toasts(screen)
