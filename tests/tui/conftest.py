"""The fake Hugging Face Hub (tests/hub_server.py) for the CLI, screen and end-to-end tests of downloads."""

from tests.hub_server import hub, hub_server  # noqa: F401
