"""``tuillm import-chat`` through the real binary: our export round-trips, an OpenAI list comes in, bad files are one
line and create nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tuillm.core.chat.store import ChatStore

TUILLM = str(Path(sys.executable).with_name("tuillm"))


def tuillm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TUILLM, *args], capture_output=True, text=True, timeout=120, env=os.environ.copy())


def test_an_export_imports_as_a_new_chat_with_the_same_messages(tmp_path: Path) -> None:
    with ChatStore() as store:
        chat = store.create_chat("Lists", model="/m/a.gguf", system_prompt="Be brief.")
        store.add_message(chat.id, "user", "Reverse a list?")
        store.add_message(chat.id, "assistant", "`items[::-1]`", stats={"generated_tokens": 5}, model="/m/a.gguf")
        path = store.export(chat.id, tmp_path / "lists.json")
    proc = tuillm("import-chat", str(path))
    assert proc.returncode == 0, proc.stderr
    with ChatStore() as store:
        new = store.list_chats()[0]
        assert new.id != chat.id
        assert proc.stdout == f"imported chat {new.id}: Lists (2 messages)\n"
        assert store.conversation(new.id) == store.conversation(chat.id)
        assert [m.model for m in store.messages(new.id)] == ["", "/m/a.gguf"]


def test_an_openai_list_with_json_output(tmp_path: Path) -> None:
    path = tmp_path / "openai.json"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]},
                                             {"role": "assistant", "content": "Hello!"}]}), encoding="utf-8")
    proc = tuillm("import-chat", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["title"] == "Hi there" and data["messages"] == 2
    with ChatStore() as store:
        assert store.conversation(data["id"]) == [{"role": "user", "content": "Hi there"},
                                                  {"role": "assistant", "content": "Hello!"}]


def test_one_message_is_counted_in_the_singular(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps([{"role": "user", "content": "Alone"}]), encoding="utf-8")
    proc = tuillm("import-chat", str(path))
    assert proc.returncode == 0 and proc.stdout.endswith(": Alone (1 message)\n"), proc.stdout + proc.stderr


def test_a_bad_file_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"role": "user", "content": "ok"}, {"role": "function", "content": "{}"}]),
                    encoding="utf-8")
    for args, line in [((str(path),), f'{path}: message 1: role "function" is not one of system, user, assistant'),
                       ((str(tmp_path / "none.json"),), f"{tmp_path / 'none.json'}: no such file")]:
        proc = tuillm("import-chat", *args)
        assert proc.returncode == 1 and proc.stdout == "" and proc.stderr == f"tuillm: {line}\n", proc.stderr
    with ChatStore() as store:
        assert store.list_chats() == []
