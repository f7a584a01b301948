"""Where notifications (Textual's toasts) go over a dialog: never over the widget being worked in.

Over the panes they sit at the top right, under the tab bar and the chat's header (app.tcss): never over the
prompt. A dialog screen has a toast rack of its own, and a large dialog fills the screen at 80x24 and 60x20, so
there is no room beside it: there, the toasts go to the top or the bottom of the screen (above the footer),
whichever leaves more room beside the focused widget (the field being typed in, the A/B prompt, the help text), and
no further than it; with nothing focused, beside the dialog itself. A rack too short for its toasts scrolls to the
newest. The place is chosen as a toast comes and as a dialog opens over toasts; while a dialog shows toasts, again as
its focus moves and as its layout changes (a resize, a scroll). Elsewhere, and on a dialog once its toasts have gone,
a focus change or a resize costs the app nothing.
"""

from __future__ import annotations

from weakref import WeakSet

from textual.app import App, ScreenStackError
from textual.css.query import NoMatches
from textual.geometry import Region
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._toast import Toast, ToastRack

MIN_ROWS = 3  # a title and a line: the rack is never shorter (it may then cover a row of a full-screen widget)


def kept_clear(screen: Screen) -> Region:
    """What the toasts must not cover: the focused widget, or with none the dialog (all that is not the footer)."""
    if screen.focused is not None and screen.focused.region:
        return screen.focused.region
    regions = [child.region for child in screen.children
               if not isinstance(child, ToastRack | Footer) and child.display and child.region]
    return Region.from_union(regions) if regions else Region()


def dialog_rack(screen: Screen) -> ToastRack | None:
    """A dialog screen's toast rack (None over the panes, whose toasts stay where app.tcss puts them)."""
    if not isinstance(screen, ModalScreen):
        return None
    try:
        return screen.get_child_by_type(ToastRack)
    except NoMatches:
        return None


def place_toasts(screen: Screen) -> None:
    """Puts a dialog screen's toast rack above or below what it must keep clear; the panes' stays where it is."""
    if (rack := dialog_rack(screen)) is None:
        return
    footers = [footer.region.y for footer in screen.query_children(Footer) if footer.display and footer.region]
    floor = min(footers, default=screen.size.height)  # the toasts end above the footer
    clear = kept_clear(screen)
    above, below = (clear.y, floor - clear.bottom) if clear else (floor, 0)
    at_top = above >= below
    # Inline, over app.tcss's rule for every rack (the panes' place: docked at the top, under the tab bar). A value
    # set again unchanged refreshes nothing, so placing again after a layout refresh ends there.
    rack.styles.dock = "top" if at_top else "bottom"
    rack.styles.align = ("right", "top" if at_top else "bottom")
    rack.styles.margin = (0, 0, 0 if at_top else screen.size.height - floor, 0)
    rack.styles.max_height = max(above if at_top else below, MIN_ROWS)


class ToastPlacement(App[int]):
    """The app's part: a dialog's toasts are placed as they come (the app's ``notify``) and as the dialog opens over
    them (the app's screen-change signal); then each toast shown over a dialog keeps them placed while it lives."""

    # The screen whose placement waits for its next refresh: one is enough for all that asked meanwhile. (A dialog
    # closed first never runs its callbacks: a placement for the next screen is then due again.)
    _placement_due: Screen | None = None
    _followed: WeakSet[Widget] | None = None  # the toasts that watch their dialog's focus

    def place_toasts_later(self) -> None:
        """After the next refresh, when the screen's widgets have their regions."""
        try:
            screen = self.screen
        except ScreenStackError:  # the app is closing: its last screen has gone
            return
        if self._placement_due is not screen:
            self._placement_due = screen
            self.call_after_refresh(self._place_toasts)

    def _place_toasts(self) -> None:
        self._placement_due = None
        try:
            screen = self.screen
        except ScreenStackError:
            return
        place_toasts(screen)
        if (rack := dialog_rack(screen)) is not None:
            self._follow(screen, rack)

    def _follow(self, screen: Screen, rack: ToastRack) -> None:
        """While ``rack`` shows toasts, its dialog's layout refreshes (a resize, a scroll, a toast that comes or
        goes) and focus moves place them again: the rack listens to the layout while it holds toasts, and each toast
        watches the focus once it is mounted (the layout refresh of its mount brings it here; Textual drops its
        watcher once it has gone)."""
        layout = screen.screen_layout_refresh_signal
        layout.unsubscribe(rack)  # subscribed once at most; with no toasts left, not at all
        # It shows toasts while displayed with a holder: a toast's holder is there at once (the toast inside it once
        # it mounts) and goes as its toast expires; the rack is hidden once the notifications are cleared.
        if not (rack.display and rack.children):
            return
        layout.subscribe(rack, lambda _screen: self.place_toasts_later())
        if self._followed is None:
            self._followed = WeakSet()
        for toast in rack.query(Toast):
            if toast not in self._followed:
                self._followed.add(toast)
                # A callable of its own per toast: Textual keeps one watcher per callable, dropped with its owner.
                toast.watch(screen, "focused", lambda: self.place_toasts_later(), init=False)
