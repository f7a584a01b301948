"""Running the app: uvicorn on the caller's thread (the CLI) or on a thread of its own (the TUI, the tests)."""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuillm.core.errors import TuillmError
from tuillm.core.options import Option, check_all, option_map
from tuillm.core.settings import Config

if TYPE_CHECKING:  # fastapi and llama.cpp: imported when a server is built, not by `tuillm`'s parser (SERVE_OPTIONS)
    from tuillm.core.serve.guard import RequestLog
    from tuillm.core.serve.models import ServedModel

SERVE_OPTIONS: tuple[Option, ...] = (
    Option("host", str, "127.0.0.1", "address to listen on (another than loopback needs --api-key)",
           group="server"),
    Option("port", int, 8080, "port to listen on (0: any free one)", lo=0, hi=65535, group="server"),
    Option("api_key", str, None, "key clients must send (Authorization: Bearer KEY); also $TUILLM_API_KEY",
           optional=True, metavar="KEY", group="server"),
    Option("idle_unload", float, 0.0, "unload the model after this many idle seconds (0: never)", lo=0.0,
           hi=1e9, metavar="SECONDS", group="server"),
)
_BY_NAME = option_map(SERVE_OPTIONS)

GRACE_S = 3


@dataclass(frozen=True)
class ServeOptions:
    host: str = _BY_NAME["host"].default
    port: int = _BY_NAME["port"].default
    api_key: str | None = None
    cors: list[str] = field(default_factory=list)  # origins allowed to call from a browser (none: CORS off)
    n_ctx: int | None = None  # None: each model's load from the settings (as the chat loads it)
    load: dict[str, Any] = field(default_factory=dict)  # other LoadOptions over the settings (--threads, --ngl…)
    idle_unload: float = _BY_NAME["idle_unload"].default  # seconds; 0: keep the model loaded
    # seconds a client has to send a request's head, then its body (None: guard.READ_TIMEOUT_S; tests shorten it)
    read_timeout: float | None = None

    def __post_init__(self) -> None:
        check_all(SERVE_OPTIONS, {o.name: getattr(self, o.name) for o in SERVE_OPTIONS})
        if not self.api_key and not is_loopback(self.host):
            raise TuillmError(f"--host {self.host}: binding beyond this machine needs --api-key (anyone on the "
                              "network could use the models otherwise)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: a free port), or a ``TuillmError`` saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family = infos[0][0]
    except (OSError, IndexError) as exc:
        raise TuillmError(f"--host {host}: not an address this machine has ({exc})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise TuillmError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


class Server:
    """The API over ``models`` with ``options``; ``serve()`` blocks, ``start()`` runs it on a thread."""

    def __init__(self, models: dict[str, ServedModel], config: Config, options: ServeOptions,
                 log: RequestLog | None = None) -> None:
        import uvicorn

        from tuillm.core.serve.app import create_app
        from tuillm.core.serve.guard import READ_TIMEOUT_S
        from tuillm.core.serve.models import ModelHost
        from tuillm.core.serve.protocol import timed_protocol

        self.options = options
        self.host = ModelHost(models, config, n_ctx=options.n_ctx, idle_unload=options.idle_unload,
                              load=options.load)
        read_timeout = options.read_timeout or READ_TIMEOUT_S
        app = create_app(self.host, api_key=options.api_key, cors=options.cors, log=log, read_timeout=read_timeout)
        # uvicorn's own access log and tracebacks stay off: each request is one line through ``log``.
        # On stop, requests still running get a few seconds, then are cancelled: their replies stop within a token,
        # and those not answered yet get a 503 (the guard).
        self._uvicorn = uvicorn.Server(uvicorn.Config(app, host=options.host, port=options.port,
                                                      log_level="critical", access_log=False, lifespan="on",
                                                      timeout_graceful_shutdown=GRACE_S,
                                                      http=timed_protocol(read_timeout)))
        self._thread: threading.Thread | None = None
        self._socket = _bind(options.host, options.port)  # now: a port in use is said before anything starts
        self.port = int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.options.host}]" if ":" in self.options.host else self.options.host
        return f"http://{host}:{self.port}"

    def serve(self) -> None:
        """Serves until ``stop()`` (or SIGINT/SIGTERM on the main thread; the CLI makes SIGHUP call ``stop()``);
        a port in use is a ``TuillmError``."""
        try:
            self._uvicorn.run(sockets=[self._socket])
        finally:
            self.host.close()
            self._socket.close()

    def start(self, timeout: float = 30.0) -> None:
        """Serves on a thread of its own; returns once it listens."""
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self.serve()
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)

        self._thread = threading.Thread(target=run, name="tuillm-serve", daemon=True)
        self._thread.start()
        while not self._uvicorn.started and self._thread.is_alive():
            self._thread.join(0.02)
            timeout -= 0.02
            if timeout <= 0:
                raise TuillmError("the server did not start")
        if failure:
            raise failure[0] if isinstance(failure[0], TuillmError) else TuillmError(str(failure[0]))

    def stop(self) -> None:
        """Stops serving as SIGTERM does (the requests running get ``GRACE_S``); waits for a ``start()``ed server.
        Safe in a signal handler of the thread that ``serve()``s: it only sets a flag there."""
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
