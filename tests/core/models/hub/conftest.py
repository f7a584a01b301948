"""The fake Hub for these tests (tests/hub_server.py), and the same Hub with faulty answers (mirror.py)."""

from tests.core.models.hub.mirror import mirror_fixture  # noqa: F401
from tests.hub_server import hub, hub_server  # noqa: F401
