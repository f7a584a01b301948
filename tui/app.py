"""The Textual app: a tab per registered pane, the status line and the footer; F1 help; the command palette.

Two nets for everything the panes show or do: every notification is made terminal-safe (its text often names a
file or quotes a model), and an unexpected exception in a handler, a worker or a timer becomes one error
notification naming the crash log, and the app keeps running (``TuillmApp._handle_exception``).

SIGTERM and SIGHUP (a dropped SSH session) quit as Ctrl+Q does (``run_app``): the panes' jobs are cancelled, so
their temporaries are removed and llama.cpp's quantizer child stops, the terminal is restored, and the exit code is
128 + the signal. The status line's memory guard reaches the Chat pane through ``StatusLine.MemoryCritical``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual._context import active_app
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.content import Content
from textual.driver import Driver
from textual.markup import MarkupError
from textual.message import Message
from textual.message_pump import MessagePump
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widget import AwaitMount
from textual.widgets import Header, TabbedContent, Tabs
from textual.worker import WorkerFailed

from tuillm.core.chat.backend import ChatBackendFactory
from tuillm.core.chat.worker import favour_decoding
from tuillm.core.errors import crash_report, error_text
from tuillm.core.models import guard
from tuillm.core.models.hardware import Hardware
from tuillm.core.settings import Config, load_config
from tuillm.core.text import safe_line, safe_text
from tuillm.tui import gc_policy, keymap, serve_control
from tuillm.tui.app_quit import QuitControl
from tuillm.tui.app_settings import SettingsControl
from tuillm.tui.cli.signals import STOP_SIGNALS, handled, ignore_stop_signals, leave_gone_terminal
from tuillm.tui.panes.base import PANES, Pane, PaneSpec
from tuillm.tui.panes.chat import ChatPane  # the first pane: composed before the first frame
from tuillm.tui.panes.outputs import OutputsWritten
from tuillm.tui.screens.help import HelpScreen, binding_rows
from tuillm.tui.session import Session
from tuillm.tui.toasts import ToastPlacement
from tuillm.tui.widgets.app_footer import AppFooter
from tuillm.tui.widgets.pane_tab import PaneTab
from tuillm.tui.widgets.status_line import MemoryProbe, StatusLine, sample_memory

if TYPE_CHECKING:  # the other panes' modules load when their pane mounts (tui.panes.base)
    from tuillm.tui.panes.base import PaneWidget
    from tuillm.tui.panes.models import ModelsPane
    from tuillm.tui.panes.train import TrainPane

# The crash guard: the same error is notified (and logged) again only after REPEAT_S; STORM_ERRORS unexpected errors
# within STORM_S (a widget failing on every frame) end the app with the one line instead.
REPEAT_S = 30.0
STORM_ERRORS = 20
STORM_S = 5.0

class TuillmApp(QuitControl, ToastPlacement, SettingsControl, serve_control.ServeControl):  # App[int]
    CSS_PATH = "app.tcss"
    TITLE = "tuillm"
    BINDINGS = keymap.APP

    def __init__(
        self,
        config: Config | None = None,
        *,
        model_dirs: list[Path] | None = None,
        available_ram: int | None = None,
        memory_probe: MemoryProbe = sample_memory,
        status_interval: float = 2.0,
        hardware: Hardware | None = None,
        chat_backend: ChatBackendFactory | None = None,
        crash_guard: bool | None = None,
    ) -> None:
        """``model_dirs`` overrides the config's folders; ``available_ram``, ``memory_probe`` and ``hardware`` fix
        the machine's figures and ``chat_backend`` replaces llama.cpp (tests and snapshots use them so the screen
        is the same on every machine). ``crash_guard``: keep running after an unexpected exception (None: yes,
        except headless, where a test should fail on it as Textual makes it)."""
        super().__init__()
        self.session = Session(config or load_config(), model_dirs, available_ram, hardware, chat_backend)
        self._memory_probe = memory_probe
        self._status_interval = status_interval
        self._crash_guard = crash_guard
        self.unexpected_errors: deque[BaseException] = deque(maxlen=100)  # what the guard caught, for tests
        self._error_times: deque[float] = deque(maxlen=STORM_ERRORS)
        self._notified_at: dict[str, float] = {}
        self.fatal_line: str | None = None  # why the guard ended the app, printed after the screen is restored
        self.stop_signal: int | None = None  # SIGTERM or SIGHUP that ended the app (run_app)
        self._startup_theme = ""  # the theme after the config's was applied (on_mount)
        self._pane_mounts: dict[str, AwaitMount] = {}  # the panes mounted after the first frame (pane())
        self._quitting = False  # _shutdown began: no more panes are mounted
        _install_dispatch_guard()

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="panes"):
            for spec in PANES:
                with PaneTab(spec.title, id=spec.id):
                    if spec is PANES[0]:  # only the pane shown first before the first frame: see _mount_next_pane
                        yield spec.load()(self.session, id=f"pane-{spec.id}")
        self._status_line = StatusLine(self._memory_probe, self._status_interval, id="status-line")
        yield self._status_line
        yield AppFooter()

    async def on_mount(self) -> None:
        if self.stop_signal is not None:  # it came while the app was starting: quit now
            self.stop_by_signal(self.stop_signal)
        favour_decoding()  # a streaming reply waits less for the GIL while the app draws
        # The panes are switched with keys; a focusable tab bar would only steal focus from the pane's keys.
        self.query_one(Tabs).can_focus = False
        await self.action_show_pane(PANES[0].id)
        self.call_after_refresh(self._mount_next_pane)
        if self.session.config.problem:
            self.notify(self.session.config.problem, title="Config", severity="warning", timeout=10, markup=False)
        self._apply_ui_settings()
        self._startup_theme = self.theme
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.screen_change_signal.subscribe(self, lambda _screen: self.place_toasts_later())

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notification (panes, screens and workers all end here) without control sequences; a message
        that is not valid markup (a file name with brackets) is shown as written instead of failing to render."""
        message, title = safe_text(message), safe_line(title)
        if markup:
            try:
                Content.from_markup(message)
            except MarkupError:
                markup = False
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)
        self.place_toasts_later()  # over a dialog, beside its focused widget (tui.toasts)

    # --- the last-resort guard --------------------------------------------------------------------------------

    @property
    def guarding(self) -> bool:
        return self._crash_guard if self._crash_guard is not None else not self.is_headless

    def _handle_exception(self, error: Exception) -> None:
        # Textual's one hook for an exception nothing caught (a handler, a worker, a timer, a callback, rendering):
        # it ends the app with a traceback. Guarded, it is an error notification and the app goes on.
        if not self.guarding:
            super()._handle_exception(error)
            return
        cause: BaseException = error.error if isinstance(error, WorkerFailed) else error
        self.unexpected_errors.append(cause)
        self._error_times.append(now := time.monotonic())
        if len(self._error_times) == STORM_ERRORS and now - self._error_times[0] < STORM_S:
            # Failing over and over (a widget that cannot draw): end; run_app prints the one line, no traceback.
            self.fatal_line = crash_report(cause)
            self.exit(return_code=2)
            return
        key = error_text(cause)
        if self._notified_at.get(key, -REPEAT_S) > now - REPEAT_S:
            return  # the same failure again (a timer): notified and logged already
        self._notified_at[key] = now
        self.notify(crash_report(cause), title="tuillm", severity="error", timeout=20, markup=False)

    def work_in_progress(self) -> list[str]:
        """What quitting now would stop (Convert's conversion, Train's job, the server), each with what stopping
        loses."""
        panes: list[Pane] = [self._mounted(spec) for spec in PANES if spec.id in self._mounted_ids()]
        work = [work for pane in panes for work in pane.work_in_progress()]
        if self.server_url is not None:
            work.append(f"the server at {self.server_url} (its clients are cut off)")
        return work

    def get_driver_class(self) -> type[Driver]:
        chosen = super().get_driver_class()
        if sys.platform == "win32":
            return chosen
        from textual.drivers.linux_driver import LinuxDriver

        from tuillm.tui.driver import HangupSafeDriver  # output that survives a hangup (Textual's hangs the app)

        return HangupSafeDriver if chosen is LinuxDriver else chosen

    def on_terminal_gone(self, _message: Message) -> None:
        # The terminal hung up (tui.driver): quit as on SIGHUP, whether that signal comes, came or never will
        leave_gone_terminal(signal.SIGHUP)
        if self.stop_signal is None:
            self.stop_by_signal(signal.SIGHUP)

    def stop_by_signal(self, signum: int) -> None:
        """Quit as Ctrl+Q does, with the exit code 128 + ``signum``: the panes' unmount sets their jobs' cancel
        events, and the process ends only after those workers have finished their cleanup."""
        self.stop_signal = signum
        self.exit(return_code=128 + signum)

    def on_status_line_memory_critical(self, event: StatusLine.MemoryCritical) -> None:
        # The memory guard: the Chat pane offers to shed its model; with nothing to offer, a warning says it.
        if not self.query_one(ChatPane).memory_critical(event.memory):
            self.notify(f"{guard.describe(event.memory)}: the system may soon stop a program",
                        title="Memory", severity="warning", timeout=15, markup=False)

    def on_chat_pane_model_status(self, message: ChatPane.ModelStatus) -> None:
        self._status_line.set_model(message.text)

    @property
    def status_line(self) -> StatusLine:
        return self._status_line

    async def pane(self, pane_id: str) -> Pane:
        """The pane with this id, ready: one not mounted yet (the app composes only its first pane before the first
        frame, then one more a frame) is mounted now, and its own widgets are there on return."""
        pane = self._mounted(next(spec for spec in PANES if spec.id == pane_id))
        await self._pane_mounts.get(pane_id, AwaitMount(self, []))  # the first pane's: nothing, composed with the app
        return pane

    def _mounted_ids(self) -> set[str]:
        # The panes whose widget exists (the first, composed with the app, and those mounted since).
        return {PANES[0].id, *self._pane_mounts}

    def _mounted(self, spec: PaneSpec) -> PaneWidget:
        # The pane's widget, its mount started if it was not yet. The main screen's: a dialog may be on top.
        cls = spec.load()
        for pane in self.screen_stack[0].query(f"#pane-{spec.id}").results(cls):
            return pane
        pane = cls(self.session, id=f"pane-{spec.id}")
        self._pane_mounts[spec.id] = self.screen_stack[0].query_one(f"PaneTab#{spec.id}", PaneTab).mount(pane)
        return pane

    def _mount_next_pane(self) -> None:
        # After each frame one more pane (Models first: its scan starts early), till all are: the first frame does
        # not wait for the Train pane's hundred widgets, and a key pressed meanwhile waits for one pane at most.
        missing = [spec for spec in PANES if spec.id not in self._pane_mounts and spec is not PANES[0]]
        if missing and not self._quitting and self.screen_stack[0].is_attached:  # neither once the app quits
            self._mounted(missing[0])
            self.call_after_refresh(self._mount_next_pane)
        elif not missing:
            self.call_after_refresh(gc_policy.started)

    async def _shutdown(self) -> None:
        # Panes still mounting finish first (no new one starts now): torn down mid-mount, a widget's Mount handler
        # runs without its children (Textual's Select, the Convert pane's bar then fail). A pane key pressed while
        # the first ones finish may start one more: each is awaited, within 5 s in all.
        self._quitting = True
        deadline, awaited = time.monotonic() + 5, set()
        while pending := [mount for pane_id, mount in self._pane_mounts.items() if pane_id not in awaited]:
            awaited.update(self._pane_mounts)
            try:
                await asyncio.wait_for(asyncio.gather(*pending), timeout=max(deadline - time.monotonic(), 0.01))
            except Exception:  # noqa: BLE001 - quitting goes on whatever the mount did (or after 5 s)
                break
        await super()._shutdown()
        gc_policy.ended()

    def current_pane_id(self) -> str:
        return self.query_one(TabbedContent).active

    async def action_show_pane(self, pane_id: str) -> None:
        pane = await self.pane(pane_id)
        # The focus leaves the pane being hidden first: hidden with it, a widget would pass it to a hidden sibling.
        self.screen_stack[0].set_focus(None)
        self.query_one(TabbedContent).active = pane_id
        pane.focus_default()

    async def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # A click on a tab: the pane takes the focus, so that its keys work at once and the focus does not stay in
        # the pane left (hidden). A message about a pane shown before this one (keys outrun messages on a busy
        # machine) changes nothing.
        pane_id = event.pane.id
        if pane_id is None or pane_id != self.current_pane_id():
            return
        focused = self.screen_stack[0].focused
        if focused is None or pane_id not in {node.id for node in focused.ancestors_with_self}:
            await self.action_show_pane(pane_id)

    async def on_pane_tab_focused_hidden(self, event: PaneTab.FocusedHidden) -> None:
        # Keys must not go to a widget nobody sees: the focus goes to the pane shown.
        if event.widget.has_focus:
            await self.action_show_pane(self.current_pane_id())

    async def on_models_pane_convert_requested(self, event: ModelsPane.ConvertRequested) -> None:
        # "Send to Convert": the Convert pane takes the model as its source.
        from tuillm.tui.panes.convert import ConvertPane

        await self.action_show_pane("convert")
        self.query_one(ConvertPane).use_source(event.path)

    async def on_outputs_written(self, event: OutputsWritten) -> None:
        # New files from the Convert or the Train pane: listed in Models at once.
        from tuillm.tui.panes.models import ModelsPane

        await self.pane("models")
        self.query_one(ModelsPane).include_paths(event.paths)

    def on_models_pane_model_chosen(self, event: ModelsPane.ModelChosen) -> None:
        # Enter on a model: chat with it.
        self.chat_with(event.path, event.name)

    def on_train_pane_open_in_chat(self, event: TrainPane.OpenInChat) -> None:
        # The Train pane's "Chat": the merged model.
        self.chat_with(event.path, event.name)

    def chat_with(self, path: Path, name: str) -> None:
        """Show the Chat pane with a new chat on this model, loaded at once (so the status line shows it). The Chat
        pane is the first: composed before the first frame, so this needs no wait."""
        self.query_one(TabbedContent).active = "chat"
        chat = self.query_one(ChatPane)
        chat.focus_default()
        chat.chat_with(path, name)

    def get_key_display(self, binding: Binding) -> str:
        display = super().get_key_display(binding)
        # "F1" as printed on keyboards, not Textual's "f1".
        return display.upper() if display[:1] == "f" and display[1:].isdigit() else display

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(binding_rows(self, self.screen, self.session.config.keys)))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for spec in PANES if screen is self.screen_stack[0] else ():  # over a dialog they would act behind it
            yield SystemCommand(f"Show {spec.title}", f"Switch to the {spec.title} pane",
                                partial(self.action_show_pane, spec.id))
            for command in self._mounted(spec).commands():
                yield command._replace(callback=partial(self._run_pane_command, spec.id, command.callback))
        yield SystemCommand("Help: keys", "List every key that works here", self.action_help)
        yield SystemCommand("Settings", "Model folders, load and sampling defaults, theme, keys (F9)",
                            self.action_settings)
        yield from super().get_system_commands(screen)

    async def _run_pane_command(self, pane_id: str, callback: Callable[[], object]) -> None:
        # A pane's command acts on what the user will look at: its pane (mounted by then).
        await self.action_show_pane(pane_id)
        callback()


_original_dispatch = MessagePump._dispatch_message


async def _guarded_dispatch(self: MessagePump, message: Message) -> None:
    """``MessagePump._dispatch_message`` that hands an exception to the guard instead of letting it end the pump's
    message loop (Textual breaks the loop of the widget whose handler raised: a handler of the app's own, or a key
    binding's action, would leave the whole app frozen). Only for a guarded ``TuillmApp``; any other app is as
    Textual makes it."""
    try:
        await _original_dispatch(self, message)
    except Exception as error:
        app = active_app.get(None)
        if not isinstance(app, TuillmApp) or not app.guarding:
            raise
        app._handle_exception(error)


def _install_dispatch_guard() -> None:
    # Every widget's messages go through MessagePump._dispatch_message: the one place to catch a handler's error.
    MessagePump._dispatch_message = _guarded_dispatch  # type: ignore[method-assign]


def _on_stop_signal(app: TuillmApp, signum: int, _frame: object) -> None:
    """SIGTERM/SIGHUP: the app quits from its event loop (a signal handler must not touch it directly)."""
    ignore_stop_signals()  # only the first counts: a second must not cut the jobs' cleanup short
    leave_gone_terminal(signum)  # after a hangup, drawing the last frames must not fail on a terminal that is gone
    try:
        loop = asyncio.get_running_loop()  # the handler runs in the main thread, inside the app's loop
    except RuntimeError:
        app.stop_signal = signum  # not running yet: on_mount quits at once
        return
    loop.call_soon_threadsafe(app.stop_by_signal, signum)


def run_app(config_path: str | None = None) -> int:
    app = TuillmApp(load_config(config_path))
    with handled(STOP_SIGNALS, partial(_on_stop_signal, app)):
        app.run()
    line = app.fatal_line or (f"stopped by {signal.Signals(app.stop_signal).name}" if app.stop_signal else None)
    if line:
        try:
            print(f"tuillm: {line}", file=sys.stderr, flush=True)
        except (OSError, ValueError):  # the terminal is gone (SIGHUP): no reason for a traceback
            pass
    return app.return_code or 0
