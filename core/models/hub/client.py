"""The Hub connection: endpoint, token, offline mode, and huggingface_hub's errors turned into one line each.

``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are read when a call is made (huggingface_hub reads them once, at import),
so a front end that changes them (a test, a settings reload) is obeyed. The token is handed to huggingface_hub and
never formatted into a message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tuillm.core.errors import TuillmError, first_line

DEFAULT_ENDPOINT = "https://huggingface.co"
# Listing calls fail fast: a search must not sit through huggingface_hub's ~23 s of retries.
PROBE_TIMEOUT_S = 5.0
API_TIMEOUT_S = 15.0
T = TypeVar("T")


class HubError(TuillmError):
    """A Hub failure in one line, without the token or a traceback."""


class HubOffline(HubError):
    pass


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


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
    if offline():
        raise HubOffline("offline (HF_HUB_OFFLINE is set): the Hugging Face Hub is not asked; "
                         "models already downloaded still work (`tuillm models`)")
    _quiet_library()
    from huggingface_hub import constants

    # The library's own flag was read at import; ours was read now and wins (see the module docstring).
    constants.HF_HUB_OFFLINE = False


def probe() -> None:
    """One short request to the endpoint, so a dead network is one line after seconds, not after retries."""
    check_online()
    import httpx2
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint(), timeout=PROBE_TIMEOUT_S)
    except httpx2.HTTPError as exc:
        raise HubOffline(f"cannot reach the Hugging Face Hub at {endpoint()} ({first_line(exc)}); "
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
        return f"cannot reach the Hugging Face Hub at {endpoint()} ({first_line(exc)})"
    return None


@contextmanager
def hub_errors(repo: str) -> Iterator[None]:
    """huggingface_hub's and the HTTP client's exceptions as one HubError line naming ``repo``."""
    try:
        yield
    except HubError:
        raise
    except Exception as exc:
        line = _message(exc, repo)
        if line is None:
            raise
        raise HubError(line) from None


def call(repo: str, fn: Callable[[], T]) -> T:
    with hub_errors(repo):
        return fn()
