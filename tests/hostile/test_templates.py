"""Hostile chat templates: each is one exact line naming the template, within its budget, with nothing left
spinning. Core renders first (fast), then the real ``tuillm chat`` stopped by SIGINT, then the Chat pane's Esc and
Ctrl+Q on a GGUF that carries the hostile template."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.core.gguf_copy import copy_gguf
from tests.processes import children_running
from tuillm.core.chat.template import ChatTemplate, ChatTemplateError, TemplateStopped

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
TUILLM = str(Path(sys.executable).with_name("tuillm"))
NESTED_LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
SIZE_BOMB = "{{ 'a' * 2000000000 }}"
# Exponential work with no output: 2**40 macro calls.
MACRO_BOMB = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
STOP_WITHIN_S = 2.0
RUNAWAY = "produced a runaway prompt (more than 4000000 characters)"
MEMORY = "needs more than 512 MiB of memory"

# (template, what follows "chat template (gguf of m.gguf)") for templates that fail fast.
FAST_CASES = {
    "size_bomb": (SIZE_BOMB, f" {RUNAWAY}"),
    "size_bomb_reversed": ("{{ 2000000000 * 'a' }}", f" {RUNAWAY}"),
    "list_bomb": ("{{ [1] * 2000000000 }}", f" {RUNAWAY}"),
    "message_times_n": ("{{ messages[0]['content'] * 100000000 }}", f" {RUNAWAY}"),
    "printing_loop": ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", f" {RUNAWAY}"),
    "center": ("{{ 'a'|center(2000000000) }}", f" {MEMORY}"),
    "percent_width": ("{{ '%2000000000s'|format('a') }}", f" {MEMORY}"),
    "str_format_width": ("{{ '{:>2000000000}'.format('a') }}", f" {MEMORY}"),
    "ljust": ("{{ 'a'.ljust(2000000000) }}", f" {MEMORY}"),
    "replace_amplifies": ("{{ ('x' * 4000000)|replace('x', 'x' * 1000) }}", f" {MEMORY}"),
    "join_amplifies": ("{{ range(100000)|join('x' * 4000000) }}", f" {MEMORY}"),
    "indent_amplifies": ("{{ ('x\n' * 1000000)|indent(1000) }}", f" {MEMORY}"),
    "huge_power": ("{{ 7 ** 100000000 }}", " computes a number larger than 65536 bits"),
    "parse_error": ("{% for %}", " does not compile: TemplateSyntaxError: Expected an expression, got 'end of "
                                 "statement block'"),
    "unclosed": ("{{ messages", " does not compile: TemplateSyntaxError: unexpected end of template, expected "
                                "'end of print statement'."),
    "unknown_filter": ("{{ 1|nosuchfilter }}", " does not compile: TemplateAssertionError: No filter named "
                                               "'nosuchfilter'."),
    "deep_nesting": ("{% if true %}" * 3000 + "x" + "{% endif %}" * 3000,
                     " does not compile: RecursionError: maximum recursion depth exceeded"),
    "empty": ("", " renders an empty prompt"),
    "blank": ("{% if false %}x{% endif %}   \n", " renders an empty prompt"),
    "raises": ("{{ raise_exception('roles must alternate user/assistant') }}",
               ": roles must alternate user/assistant"),
    "raises_escapes": ("{{ raise_exception('\x1b]52;c;cHduZWQ=\x07bad \x1b[31mroles') }}", ": bad roles"),
    "zero_division": ("{{ 1 / 0 }}", " failed: ZeroDivisionError: division by zero"),
    "undefined_call": ("{{ foo() }}", " failed: UndefinedError: 'foo' is undefined"),
    "type_error": ("{{ 1 + 'a' }}", " failed: TypeError: unsupported operand type(s) for +: 'int' and 'str'"),
    "infinite_recursion": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
                           " failed: RecursionError: maximum recursion depth exceeded"),
    "range_too_big": ("{% for i in range(10**9) %}x{% endfor %}",
                      " failed: OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE "
                      "(100000)."),
    "sandbox_escape": ("{{ ''.__class__.__mro__ }}", " refused by the sandbox: access to attribute '__class__' of "
                                                     "'str' object is unsafe."),
    "mutation": ("{% set _ = messages.append(1) %}x", " refused by the sandbox: access to attribute 'append' of "
                                                     "'list' object is unsafe."),
}


def renderers() -> list[psutil.Process]:
    """Our renderer processes still alive."""
    return children_running(psutil.Process(), "tuillm.core.chat.sandbox")  # a zombie's command line is ""


def spinning(process: psutil.Process) -> bool:
    """Busy computing (an idle renderer waits on its pipe at 0%; a low bar, as other tests share the cores)."""
    return process.cpu_percent(0.2) > 10


@pytest.mark.parametrize(("source", "tail"), FAST_CASES.values(), ids=FAST_CASES.keys())
def test_bad_template_is_its_one_line(source: str, tail: str) -> None:
    messages = [dict(m) for m in MESSAGES]
    t0 = time.monotonic()
    with pytest.raises(ChatTemplateError) as info:
        ChatTemplate(source, model="m.gguf").render(messages)
    assert str(info.value) == f"chat template (gguf of m.gguf){tail}"
    assert time.monotonic() - t0 < STOP_WITHIN_S  # refused long before the time budget
    assert messages == MESSAGES


@pytest.mark.parametrize("source", [NESTED_LOOP, MACRO_BOMB], ids=["nested_loop", "macro_bomb"])
def test_spinning_template_ends_at_the_time_budget(source: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(ChatTemplateError) as info:
        ChatTemplate(source, name="override").render(MESSAGES)
    assert str(info.value) == "chat template (override) took longer than 2 s to render"
    assert time.monotonic() - t0 < 2 + STOP_WITHIN_S
    assert not [p for p in renderers() if spinning(p)]  # the spinning renderer was killed


@pytest.mark.parametrize("source", [NESTED_LOOP, MACRO_BOMB], ids=["nested_loop", "macro_bomb"])
def test_stop_ends_a_spinning_render(source: str) -> None:
    template = ChatTemplate(source)
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    with pytest.raises(TemplateStopped) as info:
        template.render(MESSAGES, stop=stop)
    assert str(info.value) == "chat template (gguf): stopped"
    assert not [p for p in renderers() if spinning(p)]
    # The next render starts a fresh renderer and works.
    assert ChatTemplate("{{ messages[-1]['content'] }}!").render(MESSAGES) == "Hi!"


def test_a_renderer_that_dies_is_one_line_and_replaced() -> None:
    template = ChatTemplate(NESTED_LOOP, model="m.gguf")
    killer = threading.Timer(0.3, lambda: [p.kill() for p in renderers() if spinning(p)])
    killer.start()
    with pytest.raises(ChatTemplateError) as info:
        template.render(MESSAGES)
    killer.join()
    assert str(info.value) == "chat template (gguf of m.gguf) could not be rendered: the renderer ended"
    assert ChatTemplate("{{ messages[0]['role'] }}").render(MESSAGES) == "system"


def test_sandbox_blocks_python_even_in_its_process(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    source = f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}"
    with pytest.raises(ChatTemplateError, match="refused by the sandbox"):
        ChatTemplate(source).render(MESSAGES)
    assert not marker.exists()


# --- the real command, stopped by Ctrl-C ------------------------------------------------------------------------
def _wait_for_busy_renderer(proc: subprocess.Popen[bytes]) -> psutil.Process:
    """The command's renderer once it spins (the model is loaded and the template renders)."""
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        for child in parent.children(recursive=True):
            try:
                if spinning(child):
                    return child
            except psutil.NoSuchProcess:
                pass
    raise AssertionError(f"the renderer never ran: {proc.communicate()}")


@pytest.mark.slow
@pytest.mark.parametrize("source", [NESTED_LOOP, MACRO_BOMB], ids=["nested_loop", "macro_bomb"])
def test_ctrl_c_ends_tuillm_chat_in_a_spinning_template(source: str, tmp_path: Path) -> None:
    template = tmp_path / "hostile.jinja"
    template.write_text(source)
    proc = subprocess.Popen([TUILLM, "chat", "demo", "-p", "hi", "--ctx", "256", "--template", str(template)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    renderer = _wait_for_busy_renderer(proc)
    proc.send_signal(signal.SIGINT)  # one Ctrl-C
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < STOP_WITHIN_S
    assert proc.returncode == 130 and err == b"tuillm: interrupted\n" and out.strip() == b""
    assert not psutil.pid_exists(renderer.pid) or renderer.status() == psutil.STATUS_ZOMBIE
    assert template.read_text() == source and sorted(p.name for p in tmp_path.iterdir()) == ["hostile.jinja"]


def _chat(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TUILLM, "chat", "demo", "-p", "hi", "--ctx", "256", "--max-tokens", "4", *args],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())


@pytest.mark.slow
@pytest.mark.parametrize(("source", "tail"), [
    (SIZE_BOMB, f" {RUNAWAY}"),
    ("{% for %}", FAST_CASES["parse_error"][1]),
    ("{# nothing #}", " renders an empty prompt"),
    ("{{ raise_exception('no system prompt allowed') }}", ": no system prompt allowed"),
    (NESTED_LOOP, " took longer than 2 s to render"),
], ids=["size_bomb", "parse_error", "empty", "raises", "timeout"])
def test_tuillm_chat_names_the_template_in_one_line(source: str, tail: str, tmp_path: Path,
                                                    demo_gguf: Path) -> None:
    template = tmp_path / "t.jinja"
    template.write_text(source)
    proc = _chat("--template", str(template))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == f"tuillm: chat template (override of {demo_gguf.name}){tail}\n"
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not [p for p in renderers() if spinning(p)]


@pytest.mark.slow
def test_hostile_gguf_template_is_one_line(demo_gguf: Path, tmp_path: Path) -> None:
    hostile = copy_gguf(demo_gguf, tmp_path / "bomb.gguf", {"tokenizer.chat_template": SIZE_BOMB})
    proc = subprocess.run([TUILLM, "chat", str(hostile), "-p", "hi", "--ctx", "256"], capture_output=True,
                          text=True, timeout=300, env=os.environ.copy())
    assert proc.returncode == 1
    assert proc.stderr == f"tuillm: chat template (gguf of bomb.gguf) {RUNAWAY}\n"


@pytest.mark.slow
def test_a_killed_app_leaves_no_renderer_spinning(tmp_path: Path) -> None:
    """SIGKILL (the app cannot clean up): the renderer ends on its own alarm, just after the time budget."""
    template = tmp_path / "hostile.jinja"
    template.write_text(NESTED_LOOP)
    proc = subprocess.Popen([TUILLM, "chat", "demo", "-p", "hi", "--ctx", "256", "--template", str(template)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    renderer = _wait_for_busy_renderer(proc)
    proc.kill()
    proc.wait()
    try:
        renderer.wait(timeout=2 + STOP_WITHIN_S)  # an orphan: psutil waits by polling
    except psutil.TimeoutExpired:
        renderer.kill()
        raise AssertionError("the renderer outlived the app") from None
