"""Constructing a ``Llama`` never compiles the GGUF's chat templates in this process: llama-cpp-python's constructor
would (Jinja folds constants at compile time, so a hostile template ran unbounded before the sandbox saw it)."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from tests.core.gguf_copy import copy_gguf
from tuillm.core.llama.loader import new_llama

BOMB = "{{ 'a' * 2000000000 }}"  # folded at compile time: a 2 GB string and a minute of page faults


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The template sources Jinja compiles in this process from now on."""
    seen: list[str] = []
    compile_ = jinja2.Environment.compile

    def spy(self: jinja2.Environment, source: object, *args: object, **kwargs: object) -> object:
        seen.append(str(source))
        return compile_(self, source, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", spy)
    return seen


def test_a_hostile_template_is_not_compiled_by_the_constructor(demo_gguf: Path, tmp_path: Path,
                                                                  compiles: list[str]) -> None:
    bomb = copy_gguf(demo_gguf, tmp_path / "bomb.gguf", {"tokenizer.chat_template": BOMB})
    llm = new_llama(str(bomb), n_ctx=256, verbose=False)
    try:
        assert llm.metadata["tokenizer.chat_template"] == BOMB  # the file's template is there...
        assert compiles == []  # ...and nothing compiled it
    finally:
        llm.close()


def test_llama_cpp_pythons_own_chat_still_works_when_called(demo_gguf: Path, compiles: list[str]) -> None:
    """Its chat handler compiles the template on first use (tests use it as a reference on the demo model)."""
    llm = new_llama(str(demo_gguf), n_ctx=256, verbose=False)
    try:
        assert compiles == []
        reply = llm.create_chat_completion([{"role": "user", "content": "Say hi."}], max_tokens=4, temperature=0.0)
        assert reply["choices"][0]["message"]["content"]
        assert compiles == [llm.metadata["tokenizer.chat_template"]]
    finally:
        llm.close()


def test_a_failure_is_told_with_the_lines_its_own_thread_logged() -> None:
    """A server's chat and embedding contexts run llama.cpp on threads of their own: a decode's failure was told
    with whatever line the other had logged last (a warning from minutes before, or the other's own error)."""
    import threading

    from tuillm.core.llama import loader

    loader.install_log_capture()
    log = loader._log_callback  # the callback llama.cpp calls, through its C pointer as llama.cpp would

    def elsewhere(text: bytes) -> None:
        thread = threading.Thread(target=log, args=(4, text, None))
        thread.start()
        thread.join()

    elsewhere(b"llama_decode: failed to decode, an older failure\n")
    mark = loader.log_mark()
    assert loader.last_llama_error(mark) == ""  # nothing since the mark: not the older line
    elsewhere(b"llama_decode: failed to decode, another thread's\n")
    assert loader.last_llama_error(mark) == "failed to decode, another thread's"  # none of its own: the others'
    log(3, b"llama_init_from_model: error loading model: this thread's\n", None)
    elsewhere(b"llama_decode: failed to decode, logged after it elsewhere\n")
    assert loader.last_llama_error(mark) == "this thread's"
