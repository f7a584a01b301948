"""``tuillm chat --attach`` through the real binary and the demo model: the file goes with the prompt, its token count
and the context warning go to stderr; a bad file is one line before anything loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TUILLM = str(Path(sys.executable).with_name("tuillm"))
FAST = ["--ctx", "512", "--temp", "0", "--max-tokens", "8"]


def tuillm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TUILLM, *args], capture_output=True, text=True, timeout=300, env=os.environ.copy())


def test_attached_files_go_with_the_prompt(tmp_path: Path) -> None:
    (tmp_path / "add.py").write_text("def add(a, b):\n    return a + b\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("Use it for sums.\n", encoding="utf-8")
    proc = tuillm("chat", "demo", "-p", "What does add do?", "--attach", str(tmp_path / "add.py"), "-a",
                  str(tmp_path / "notes.md"), "--json", *FAST)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["prompt"] == (f"What does add do?\n\nFile: {tmp_path / 'add.py'}\n```python\ndef add(a, b):\n"
                              f"    return a + b\n```\n\nFile: {tmp_path / 'notes.md'}\n```markdown\nUse it for sums."
                              "\n```")
    assert data["answer"].strip()
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"tuillm: attached {tmp_path / 'add.py'} (") and f"{tmp_path / 'notes.md'} (" in line
    without = json.loads(tuillm("chat", "demo", "-p", "What does add do?", "--json", *FAST).stdout)
    assert data["stats"]["prompt_tokens"] > without["stats"]["prompt_tokens"] + 20


def test_a_file_that_leaves_no_room_for_the_reply_is_warned_about(tmp_path: Path) -> None:
    (tmp_path / "long.txt").write_text("All work and no play makes Jack a dull boy.\n" * 30, encoding="utf-8")
    proc = tuillm("chat", "demo", "-p", "Summarize.", "-a", str(tmp_path / "long.txt"), "--ctx", "512", "--temp",
                  "0", "--max-tokens", "300", "--json")
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if line.startswith("tuillm: warning: the chat with")]
    assert len(warning) == 1 and "(512 - 300 for the reply)" in warning[0], proc.stderr
    assert json.loads(proc.stdout)["stats"]["generated_tokens"] > 0  # sent all the same: the reply is shorter


def test_bad_attachments_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a\n", encoding="utf-8")
    for args, line in [
        (["-a", str(tmp_path / "a.txt")], "--attach needs --prompt (the message the files go with)"),
        (["-p", "x", "-a", str(tmp_path / "gone.txt")], f"{tmp_path / 'gone.txt'}: no such file"),
        (["-p", "x", "-a", sys.executable], f"{sys.executable} is a binary file: only text files can be attached"),
    ]:
        proc = tuillm("chat", "demo", *args, *FAST)
        assert proc.returncode == 1 and proc.stdout == "" and proc.stderr == f"tuillm: {line}\n", proc.stderr
