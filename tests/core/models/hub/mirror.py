"""The fake Hub (tests/hub_server.py) with some paths answered another way: a mirror that sends HTML, the wrong
JSON, or nothing at all. The other paths are the fake Hub's own, so one bad answer is tested among good ones."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from tests.hub_server import FakeHub, _Handler

STALL_S = 30.0  # how long a stalled answer waits at most; the teardown ends it sooner


@dataclass
class Mirror:
    hub: FakeHub
    answers: dict[str, bytes] = field(default_factory=dict)  # path → the 200 body sent instead
    stall: set[str] = field(default_factory=set)  # paths whose requests are read and never answered
    # path → a function that answers the request itself (the handler: send_response, headers, wfile...)
    routes: dict[str, Callable[[_Handler], None]] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return self.hub.url


@pytest.fixture(name="mirror")
def mirror_fixture(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    from huggingface_hub import close_session

    m = Mirror(hub)

    class Handler(_Handler):
        def _answer(self) -> None:
            path = urlsplit(self.path).path
            m.seen.append((self.command, path))
            if path in m.stall:
                m.release.wait(STALL_S)
                self.close_connection = True
                return None
            if path in m.routes:
                return m.routes[path](self)
            if path in m.answers:
                return self._send(200, m.answers[path])
            return self._route()

        do_GET = do_HEAD = _answer  # noqa: N815 - BaseHTTPRequestHandler's naming

    monkeypatch.setattr(hub, "RequestHandlerClass", Handler)
    # huggingface_hub's shared client keeps connections alive, and a kept one is served by the handler it met.
    close_session()
    yield m
    m.release.set()
    close_session()
