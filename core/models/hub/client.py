"""The Hub connection: endpoint, token, offline mode, and huggingface_hub's errors turned into one line each.

``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are read when a call is made (huggingface_hub reads them once, at import),
so a front end that changes them (a test, a settings reload) is obeyed. The token is handed to huggingface_hub and
never formatted into a message. An answer that is not what the Hub sends (not JSON, the wrong shape, nested too
deep, a number too long to read) is one line naming the endpoint, as a network failure is.

huggingface_hub's "telemetry" is turned off for tuillm's requests: with it on, building the user agent asks
``{HF_ENDPOINT}/api/agent-harnesses`` (the endpoint read at import), caches the answer for a day under HF_HOME
and reads it with ``.get``, so a mirror answering that path with a JSON list breaks every later request of every
tool sharing the cache with an AttributeError inside the library.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from tuillm.core.errors import TuillmError, first_line
from tuillm.core.text import format_bytes, safe_line

DEFAULT_ENDPOINT = "https://huggingface.co"
# Listing calls fail fast: a search must not sit through huggingface_hub's ~23 s of retries.
PROBE_TIMEOUT_S = 5.0
API_TIMEOUT_S = 15.0  # one request of the API (search, a repository's listing, a file's metadata), no retries
# What reading a malformed answer raises, in huggingface_hub or here: not JSON (ValueError), the wrong shape
# (TypeError, KeyError, AttributeError, IndexError), nested deeper than the parser goes (RecursionError).
ANSWER_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError)
MAX_WHY_CHARS = 160
# An answer is read as it streams, never whole: JSON of the API up to MAX_ANSWER_BYTES (a search of 100 repos with
# their files, a listing of thousands of files, take a few MB), an error's body up to MAX_ERROR_BYTES, and all of it
# within ANSWER_DEADLINE_S plus a second per MIN_RATE bytes (a server that trickles a byte at a time, each within
# API_TIMEOUT_S, would otherwise be waited for without end).
MAX_ANSWER_BYTES = 32 << 20
MAX_ERROR_BYTES = 64 << 10
ANSWER_DEADLINE_S = 60.0
MIN_RATE = 1 << 20
T = TypeVar("T")


class HubError(TuillmError):
    """A Hub failure in one line, without the token or a traceback."""


class HubOffline(HubError):
    pass


def check_endpoint(value: str) -> str:
    """``value`` without its trailing slashes when it is an http(s) URL with a host huggingface_hub can append API
    paths to; a one-line error naming HF_ENDPOINT otherwise."""
    url = value.rstrip("/")
    try:
        parts = urlsplit(url)
        # .port raises for a port that is not a number below 65536
        good = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port is None or parts.port > 0)
        (parts.hostname or "").encode("idna")  # an empty or overlong label fails here, not at the connection
    except ValueError:  # an unclosed "[", a bad host name (UnicodeError is a ValueError)
        good = False
    # A query or fragment would swallow the API paths appended to it.
    if not good or parts.query or parts.fragment or not url.isprintable() or any(c.isspace() for c in url):
        # repr shows control characters escaped (a stripped one could leave a URL that looks right)
        shown = repr(value[:200]) + ("…" if len(value) > 200 else "")
        raise HubError(f"HF_ENDPOINT is not an http(s) URL with a host: {shown}")
    return url


def endpoint() -> str:
    return check_endpoint(os.environ.get("HF_ENDPOINT") or _set_aside or DEFAULT_ENDPOINT)


def shown_endpoint() -> str:
    """``endpoint()`` as a message shows it: without the user and password a mirror's URL may carry
    (https://user:token@mirror), which are as secret as the token."""
    url = endpoint()
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


_set_aside: str | None = None  # a bad HF_ENDPOINT taken out of the environment (set_aside_bad_endpoint)


def set_aside_bad_endpoint() -> None:
    """Importing huggingface_hub, and with it transformers, fails on an HF_ENDPOINT it cannot parse (``http://[``):
    train, convert and merge, which never ask the Hub, ended in a crash report. A value ``check_endpoint`` refuses
    is taken out of the environment before anything imports them, and kept where ``endpoint`` still finds it, so
    pull and search refuse it in one line as before. Called once, as a front end starts."""
    global _set_aside
    value = os.environ.get("HF_ENDPOINT")
    if not value:
        return
    try:
        check_endpoint(value)
    except HubError:
        _set_aside = os.environ.pop("HF_ENDPOINT")


def offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def token() -> str | None:
    """HF_TOKEN or the saved login (`hf auth login`), as huggingface_hub finds it; None: anonymous."""
    from huggingface_hub import get_token

    return get_token()


def _quiet_library() -> None:
    # huggingface_hub logs retries and hints as warnings on stderr; the front ends show our one line instead.
    from huggingface_hub.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def check_online() -> None:
    """Refuses at once when offline mode is on."""
    endpoint()  # before huggingface_hub is imported: its import reads HF_ENDPOINT and fails on a bad one
    if offline():
        raise HubOffline("offline (HF_HUB_OFFLINE is set): the Hugging Face Hub is not asked; "
                         "models already downloaded still work (`tuillm models`)")
    _quiet_library()
    from huggingface_hub import constants

    # The library's own flag was read at import; ours was read now and wins (see the module docstring).
    constants.HF_HUB_OFFLINE = False
    constants.HF_HUB_DISABLE_TELEMETRY = True  # no agent-harness request, no cache of it (module docstring)


def probe() -> None:
    """One short request to the endpoint, so a dead network is one line after seconds, not after retries."""
    check_online()
    import httpx2
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint(), timeout=PROBE_TIMEOUT_S)
    except httpx2.HTTPError as exc:
        raise HubOffline(f"cannot reach the Hugging Face Hub at {shown_endpoint()} ({first_line(exc)}); "
                         "models already downloaded still work (`tuillm models`)") from None


def _message(exc: BaseException, repo: str) -> str | None:
    import httpx2
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        status = exc.response.status_code if exc.response is not None else 0
        if status == 401:
            return (f"{repo} is gated: accept its terms on the Hub, then log in (`hf auth login`) or set HF_TOKEN")
        return f"{repo} is gated and your token has no access yet: accept its terms on the Hub page"
    if isinstance(exc, errors.RepositoryNotFoundError):
        return f"{repo}: no such repository on the Hub (or it is private and no token with access is set)"
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"{repo}: no such revision"
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        return f"{repo}: no such file in the repository"
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return "offline (HF_HUB_OFFLINE is set): the Hugging Face Hub is not asked"
    if isinstance(exc, errors.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        return f"{repo}: the Hub answered HTTP {status}"
    if isinstance(exc, httpx2.HTTPError):
        storage = _other_host(exc)
        if storage is not None:  # the Hub answered, and sent the file's bytes to be fetched elsewhere
            return f"cannot reach the Hub's file storage at {storage} ({first_line(exc)})"
        return f"cannot reach the Hugging Face Hub at {shown_endpoint()} ({first_line(exc)})"
    return None


def _other_host(exc: BaseException) -> str | None:
    """The host a failed request went to, when not the Hub's own (huggingface.co's files come from a CDN)."""
    try:
        url = exc.request.url  # type: ignore[attr-defined]  # httpx's errors; RuntimeError when it has none
    except (AttributeError, RuntimeError):
        return None
    hub = urlsplit(endpoint())
    if (url.host, url.port) == (hub.hostname, hub.port):
        return None
    return safe_line(f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else ""))


def unexpected(what: str, why: str) -> HubError:
    """An answer of the endpoint that tuillm cannot use, in one line."""
    why = safe_line(why).strip()
    if len(why) > MAX_WHY_CHARS:
        why = why[:MAX_WHY_CHARS - 1] + "…"
    return HubError(f"{shown_endpoint()}: the Hub's answer to {what} is not what was expected ({why})")


def _why(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {first_line(exc)}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, KeyError):
        return f"no {first_line(exc)} field"
    # The int-length limit's message ends with advice to the programmer (sys.set_int_max_str_digits).
    return first_line(exc).split("; use sys.", 1)[0]


@contextmanager
def hub_errors(repo: str, what: str | None = None) -> Iterator[None]:
    """huggingface_hub's and the HTTP client's exceptions as one HubError line naming ``repo``; with ``what``
    (the request, in words), a malformed answer too (only the reading of an answer goes inside such a block)."""
    try:
        yield
    except HubError:
        raise
    except Exception as exc:
        line = _message(exc, repo)
        if line is None and what is not None and isinstance(exc, ANSWER_ERRORS):
            raise unexpected(what, _why(exc)) from None
        if line is None:
            raise
        raise HubError(line) from None


def _raise_for_status(r: object, body: bytes) -> None:
    """huggingface_hub's error for an answer's HTTP status (gated, no such repo...), judged from the first bytes of
    its body: ``hf_raise_for_status`` on the streamed answer itself would read all of it."""
    import httpx2
    from huggingface_hub.utils import hf_raise_for_status

    if r.status_code < 400:  # type: ignore[attr-defined]
        return
    drop = ("content-encoding", "content-length", "transfer-encoding")  # the body is decoded and cut already
    headers = [(k, v) for k, v in r.headers.multi_items() if k.lower() not in drop]  # type: ignore[attr-defined]
    hf_raise_for_status(httpx2.Response(r.status_code, headers=headers, content=body,  # type: ignore[attr-defined]
                                        request=r.request))  # type: ignore[attr-defined]


def get_bounded(url: str, *, what: str, limit: int | None = None, cut: bool = False,
                params: dict | None = None, headers: dict | None = None) -> bytes:
    """The body of a GET to the Hub, read as it streams: at most ``limit`` bytes (more is a HubError naming
    ``what``, or with ``cut`` the first ``limit`` bytes; MAX_ANSWER_BYTES by default), in a bounded time; an HTTP
    error status raised as huggingface_hub raises it (inside ``call``/``hub_errors``, one line)."""
    from huggingface_hub.utils import build_hf_headers, get_session

    limit = MAX_ANSWER_BYTES if limit is None else limit
    allowed = ANSWER_DEADLINE_S + limit / MIN_RATE
    deadline = time.monotonic() + allowed
    body = bytearray()
    with get_session().stream("GET", url, params=params, headers=headers or build_hf_headers(token=token()),
                              timeout=API_TIMEOUT_S, follow_redirects=True) as r:
        cap = limit if r.status_code < 400 else MAX_ERROR_BYTES
        for chunk in r.iter_bytes():
            body += chunk
            if len(body) > cap:
                if r.status_code < 400 and not cut:
                    raise unexpected(what, f"longer than {format_bytes(cap)}")
                break
            if time.monotonic() > deadline:
                raise HubError(f"{shown_endpoint()}: the Hub's answer to {what} did not end within {allowed:.0f} s")
        del body[cap:]
        _raise_for_status(r, bytes(body))
    return bytes(body)


def call(repo: str, fn: Callable[[], T], what: str | None = None) -> T:
    with hub_errors(repo, what):
        return fn()
