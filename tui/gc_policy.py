"""When the app's garbage collector does its full passes: at quiet moments, not while a reply streams.

Python's collector passes over every tracked object when enough new ones have survived, and the app holds ~150,000
after start (modules, the panes' widgets): such a pass took ~45 ms of the event loop, and while a reply streamed it
came about once a reply, competing with the model's decoding threads for the CPU. So the objects alive once the app
has started are frozen (they live as long as the app: passes skip them, ~10 ms instead of ~45), and a full pass runs
after each reply, when the user reads: the next reply starts with nothing pending and a pass rarely falls within it.
"""

from __future__ import annotations

import gc


def started() -> None:
    """The app has started (every pane mounted): collect what starting left, and freeze the rest."""
    gc.collect()
    gc.freeze()


def quiet() -> None:
    """A quiet moment (a reply ended): the full pass now rather than during the next reply."""
    gc.collect()


def ended() -> None:
    """The app is ending: what was frozen can be collected again (a process that runs several apps, as the tests
    do, would otherwise keep every one)."""
    gc.unfreeze()
