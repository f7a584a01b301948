"""The fake Hub for these tests (tests/hub_server.py)."""

from tests.hub_server import hub, hub_server  # noqa: F401
