"""The prompt's lower border says what Enter will attach, and what sending would refuse (tui.widgets.chat_prompt)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuillm.core.chat.attachments import HEAD_BYTES
from tuillm.tui.widgets.chat_prompt import attaching


def test_a_file_sending_would_refuse_gets_no_token_estimate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("ls.bin").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(200))  # an executable: NUL bytes
    Path("photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    Path("latin.txt").write_bytes("café crème\n".encode("latin-1"))
    # UTF-8 whose character is cut by the part the border reads: still text (the estimate counts the whole file)
    Path("notes.md").write_bytes(b"a" * (HEAD_BYTES - 1) + "é and more\n".encode())
    line = attaching("see @ls.bin @photo.png @latin.txt @notes.md")
    assert line == ("attaching ls.bin: binary · photo.png: binary · latin.txt: not UTF-8 · notes.md (~2051 tokens)")


def test_a_fifo_in_the_way_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkfifo("pipe")
    assert attaching("@pipe") == "attaching pipe: not a file"  # said from its stat; opening it would block
