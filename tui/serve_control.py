"""Running ``tuillm serve`` from the app: palette commands "Start server" / "Stop server" / "Server log", the
address on the status line while it runs, and a log screen of the requests it answered.

A mixin for the App (``class TuillmApp(ServeControl, App[int])``): its ``get_system_commands`` adds the commands
in front of the app's. The server runs on a thread of its own (uvicorn, ``core.serve.server.Server``) with its own
chat engine, so the Chat pane's model and replies are not disturbed; requests reach the app as messages.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual import work
from textual.app import App, SystemCommand
from textual.message import Message
from textual.screen import Screen

from tuillm.core.errors import TuillmError, error_text
from tuillm.tui.app_quit import WorkChanged

if TYPE_CHECKING:
    from tuillm.core.serve.guard import RequestRecord
    from tuillm.core.serve.server import ServeOptions, Server
    from tuillm.tui.screens.serve_log import ServeLogScreen
    from tuillm.tui.session import Session

LOG_ROWS = 1000  # the log screen keeps the latest requests


class ServerRequest(Message):
    """A request the server answered (posted from its thread)."""

    def __init__(self, record: RequestRecord) -> None:
        super().__init__()
        self.record = record


class ServerState(Message):
    """The server started (``url``) or stopped (None), or failed to start (``error``)."""

    def __init__(self, url: str | None, error: str = "") -> None:
        super().__init__()
        self.url = url
        self.error = error


class ServeControl(App[int]):
    """The app's part of ``tuillm serve``: start, stop, status, log."""

    serve_options: ServeOptions | None = None  # None: ServeOptions() (127.0.0.1:8080); tests set port 0
    _server: Server | None = None
    # A start or stop runs on a worker until its ServerState: a second start then made a second server (orphaned,
    # still serving after "Stop server" and the app's end), and a failed one reported "not serving" over the first.
    _serve_changing = False
    _serve_closed = False  # the app is ending: a server that finishes starting now is stopped at once
    server_url: str | None = None
    serve_log: deque[RequestRecord]
    session: Session  # the app's: its config (model folders, load settings) is the server's

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        if self.server_url is None:
            yield SystemCommand("Start server", "Serve the models over the OpenAI and Ollama APIs "
                                "(tuillm serve, 127.0.0.1:8080)", self.action_start_server)
        else:
            yield SystemCommand("Stop server", f"Stop serving at {self.server_url}", self.action_stop_server)
        yield SystemCommand("Server log", "The requests the server answered: model, tokens, time, status",
                            self.action_server_log)
        yield from super().get_system_commands(screen)

    def action_start_server(self) -> None:
        if self._serve_busy():
            return
        if self._server is None:
            self._serve_changing = True
            self.notify("Starting the server…", title="Server")
            self._start_server()

    def action_stop_server(self) -> None:
        if self._serve_busy():
            return
        if self._server is not None:
            self._serve_changing = True
            self._stop_server(self._server)

    def _serve_busy(self) -> bool:
        """Whether a start or stop is under way (and the user was told so)."""
        if self._serve_changing:
            self.notify("the server is starting or stopping: wait for it", title="Server", severity="warning")
        return self._serve_changing

    def action_server_log(self) -> None:
        from tuillm.tui.screens.serve_log import ServeLogScreen

        if isinstance(self.screen, ServeLogScreen):  # the palette over the log: it is open already
            return
        self.push_screen(ServeLogScreen(list(self._log()), self.server_url))

    def _log(self) -> deque[RequestRecord]:
        if not hasattr(self, "serve_log"):
            self.serve_log = deque(maxlen=LOG_ROWS)
        return self.serve_log

    @work(thread=True, exclusive=True, group="serve")
    def _start_server(self) -> None:
        from tuillm.core.serve.models import served_models
        from tuillm.core.serve.server import ServeOptions, Server

        try:
            config = self.session.config
            server = Server(served_models([], [], config), config, self.serve_options or ServeOptions(),
                            log=lambda record: self.post_message(ServerRequest(record)))
            server.start()
        except TuillmError as exc:
            self.post_message(ServerState(None, error_text(exc)))
            return
        self._server = server
        if self._serve_closed:  # the app ended while it started: no one is left to stop it
            self.stop_serving()
            return
        self.post_message(ServerState(server.url))

    @work(thread=True, exclusive=True, group="serve")
    def _stop_server(self, server: Server) -> None:
        server.stop()
        self._server = None
        self.post_message(ServerState(None))

    def on_server_state(self, message: ServerState) -> None:
        self._serve_changing = False
        self.server_url = message.url
        self.query_one("#status-line").set_server(message.url)
        for screen in self._log_screens():  # an open log named the stopped server as serving
            screen.set_url(message.url)
        if message.error:
            self.notify(message.error, title="Server", severity="error", markup=False)
        else:
            self.post_message(WorkChanged())  # Ctrl+Q's question, if open, names what quitting stops now (app_quit)
            self.notify(f"Serving at {message.url}" if message.url else "Server stopped", title="Server",
                        markup=False)

    def on_server_request(self, message: ServerRequest) -> None:
        self._log().append(message.record)
        for screen in self._log_screens():
            screen.add(message.record)

    def _log_screens(self) -> list[ServeLogScreen]:
        from tuillm.tui.screens.serve_log import ServeLogScreen

        return [screen for screen in self.screen_stack if isinstance(screen, ServeLogScreen)]

    def on_unmount(self) -> None:
        self.stop_serving()

    def stop_serving(self) -> None:
        """Stops a running server now (the app is quitting), and one still starting once it has started."""
        self._serve_closed = True
        server, self._server = self._server, None
        if server is not None:
            server.stop()
