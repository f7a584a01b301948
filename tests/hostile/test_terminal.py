"""Terminal safety: a GGUF whose name and template hold OSC 52 / OSC 0 / CSI, and a file named with escape sequences,
in a models folder. The CLI (`models`, `models --json`, `info`, progress lines, error lines) and the TUI (the Models
table, the details screen, notifications, the status line, chat replies and stored messages) show them as plain
text: no ESC, BEL or C1 byte reaches the terminal. Also the TUI's last-resort guard and `--ctx` refusals.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from tests.ggufs import write_tiny_gguf
from tests.tui.app_helpers import make_app, run_async, until, wait_for_catalog
from tests.tui.chat_helpers import chat_app, chat_pane, send, wait_idle
from tests.tui.fake_backend import FakeBackend
from tuillm.core.errors import ModelFileError, TuillmError, crash_log_path, crash_report, error_text, first_line
from tuillm.core.events import Log, Metric, Progress
from tuillm.tui.app import TuillmApp
from tuillm.tui.cli import main
from tuillm.tui.cli.progress import CliRenderer, print_path
from tuillm.tui.screens.model_details import ModelDetailsScreen
from tuillm.tui.widgets.safe_markdown import SafeMarkdown

OSC52 = "\x1b]52;c;aGVsbG8=\x07"  # writes the clipboard
OSC0 = "\x1b]0;pwned\x1b\\"  # renames the terminal (ended by ST)
CSI = "\x1b[2J\x1b[H"  # clears the screen
C1 = "\x9b31m"  # the 8-bit CSI
HOSTILE_NAME = f"SmolLM2{OSC52} 135M{OSC0}{CSI}{C1}!"
SHOWN_NAME = "SmolLM2 135M!"
HOSTILE_TEMPLATE = f"{{{{ messages[0]['content'] }}}}{OSC0}\n{CSI}line two\x07"
FILE_STEM = "bad\x1b]0;title\x07name"  # a file named with an escape sequence
SHOWN_STEM = "badname"
# Every byte that starts or is part of a control sequence: C0 but newline, DEL, C1.
CONTROLS = {chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))} - {"\n"}


def unsafe(text: str) -> set[str]:
    return set(text) & CONTROLS


@pytest.fixture
def models_dir(isolated_home: Path) -> Path:
    """~/models (a default folder of the catalog) with the hostile GGUF and the hostile file name."""
    folder = isolated_home / "models"
    folder.mkdir()
    write_tiny_gguf(folder / "evil.gguf", name=HOSTILE_NAME, template=HOSTILE_TEMPLATE)
    write_tiny_gguf(folder / f"{FILE_STEM}.gguf", name="plain")
    return folder


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- the CLI -------------------------------------------------------------------------------------------------------

def test_models_table_is_plain_text(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "models")
    assert (code, unsafe(out), unsafe(err)) == (0, set(), set())
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert SHOWN_STEM in names and "evil" in names
    row = next(line for line in out.splitlines() if line.startswith(SHOWN_STEM))
    assert row.split()[1:3] == ["folder", "llama"]  # the columns stay aligned: nothing moved the cursor


def test_models_json_escapes_control_characters(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "models", "--json")
    assert (code, unsafe(out), err) == (0, set(), "")
    assert "\\u001b" in out  # escaped, not raw
    models = {m["name"]: m for m in json.loads(out)["models"]}
    # The data is what the file holds, exactly: JSON is for scripts, and escaping keeps the terminal safe.
    assert models[FILE_STEM]["path"] == str(models_dir / f"{FILE_STEM}.gguf")
    assert models["evil"]["model_name"] == HOSTILE_NAME


def test_info_shows_the_name_as_plain_text(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "info", str(models_dir / "evil.gguf"))
    assert (code, unsafe(out), err) == (0, set(), "")
    lines = out.splitlines()
    assert f"name           {SHOWN_NAME}" in lines
    assert "chat template  yes" in lines


def test_info_shows_a_hostile_file_name_as_plain_text(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "info", str(models_dir / f"{FILE_STEM}.gguf"))
    assert (code, unsafe(out), err) == (0, set(), "")
    assert out.splitlines()[0] == f"path           {models_dir}/{SHOWN_STEM}.gguf"


def test_info_json_escapes_control_characters(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "info", str(models_dir / "evil.gguf"), "--json")
    assert (code, unsafe(out)) == (0, set())
    assert json.loads(out)["name"] == HOSTILE_NAME


def test_an_error_naming_a_hostile_path_is_one_safe_line(isolated_home: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    missing = isolated_home / f"{FILE_STEM}.gguf"
    code, out, err = run_cli(capsys, "info", str(missing))
    assert (code, out, unsafe(err)) == (1, "", set())
    assert err.startswith(f"tuillm: {isolated_home}/{SHOWN_STEM}.gguf: ")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not missing.exists()


@pytest.mark.parametrize("command", ["models", "info"])
@pytest.mark.parametrize("ctx", ["-100", "0", "15", "abc", "nan", "inf", "1.5", "", "1e9", "9" * 30])
def test_a_bad_context_is_refused_in_the_declaration_s_words(
        command: str, ctx: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [command, "demo"] if command == "info" else [command]
    code, out, err = run_cli(capsys, *argv, "--ctx", ctx)
    if ctx == "9" * 30:  # a whole number, so taken by the declaration (no upper bound): the estimate says no
        assert code == 0 and "too big" in out
        return
    assert (code, out, err) == (1, "", f"tuillm: --ctx: must be a whole number at least 16, not {ctx!r}\n")


def test_a_good_context_is_taken(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "info", "demo", "--ctx", "16", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["est_ctx"] == 16


def test_progress_and_log_lines_are_safe_when_piped() -> None:
    stream = io.StringIO()
    render = CliRenderer(stream)
    render(Log(f"wrote {FILE_STEM}.gguf\nnext line"))
    render(Log(f"{OSC52}careful", level="warning"))
    render(Progress(f"convert{CSI}", 1, 1, f"{FILE_STEM}.gguf"))
    render(Metric(f"loss{OSC0}", 0.5, 3))
    assert stream.getvalue().splitlines() == [
        f"wrote {SHOWN_STEM}.gguf", "next line", "warning: careful", f"convert: 100% {SHOWN_STEM}.gguf",
        "loss = 0.5 (step 3)"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_redrawn_progress_line_holds_only_its_own_sequence() -> None:
    stream = _Terminal()
    CliRenderer(stream)(Progress("quantize", 1, 2, f"{FILE_STEM}{OSC0}\r\n.gguf"))
    assert stream.getvalue() == f"\r\x1b[2Kquantize: [{'#' * 15}{'-' * 15}]  50.0% {SHOWN_STEM} .gguf"


# --- the one error line -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("exc", "shown"), [
    (ModelFileError(f"/m/{FILE_STEM}.gguf", f"not a GGUF ({OSC52}magic)"), f"/m/{SHOWN_STEM}.gguf: not a GGUF (magic)"),
    (TuillmError(f"{CSI}{C1}"), "TuillmError"),  # nothing left: the type's name
    (ValueError(f"first{OSC0}\nsecond"), "ValueError: first"),  # a bug: its type and first line only
    (KeyError(), "KeyError"),
    (RuntimeError(f"\n\n  {CSI}late line"), "RuntimeError: late line"),
])
def test_error_text_is_safe(exc: BaseException, shown: str) -> None:
    assert error_text(exc) == shown
    assert unsafe(first_line(exc)) == set()


def test_crash_report_writes_a_safe_traceback(isolated_home: Path) -> None:
    try:
        raise RuntimeError(f"boom{OSC52}")
    except RuntimeError as exc:
        line = crash_report(exc)
    log = crash_log_path()
    assert log == isolated_home / ".local/state/tuillm/crash.log"
    assert line == f"unexpected error: RuntimeError: boom; details in {log}"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text
    assert unsafe(text.replace("\n", "")) == set()


def test_crash_report_without_a_writable_state_dir(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = isolated_home / "state"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    line = crash_report(OSError("disk gone"))
    assert line == f"unexpected error: OSError: disk gone; no crash log ({blocker}/tuillm/crash.log cannot be written)"
    assert blocker.read_text() == "a file where the folder should be"


# --- the TUI ------------------------------------------------------------------------------------------------------

def screen_text(app: App) -> str:
    """What the screen sends to the terminal, less Textual's own styling: every segment's text, line by line."""
    update = app.screen._compositor.render_update(full=True)
    return "\n".join("".join(seg.text for strip in line for seg in strip if not seg.control)
                     for line in update.strips)


@run_async
async def test_models_pane_table_and_details_are_plain_text(models_dir: Path) -> None:
    app = make_app([models_dir])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        table = app.query_one("#models-table", DataTable)
        cells = [str(cell) for i in range(table.row_count) for cell in table.get_row_at(i)]
        assert unsafe("".join(cells)) == set()
        assert SHOWN_STEM in cells and "evil" in cells
        assert unsafe(screen_text(app)) == set()
        table.move_cursor(row=[str(table.get_row_at(i)[0]) for i in range(table.row_count)].index("evil"))
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, ModelDetailsScreen), "the details screen")
        await pilot.pause()
        shown = screen_text(app)
        assert unsafe(shown) == set()
        assert f"name              {SHOWN_NAME}" in shown
        assert "]0;pwned" not in shown and "52;c;" not in shown
        details = app.screen
        template = str(details.query_one("#details-template").render())
        assert template == "{{ messages[0]['content'] }}\nline two"


@run_async
async def test_a_notification_is_shown_safe() -> None:
    app = make_app([])
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        app.notify(f"could not read {FILE_STEM}.gguf [/]", title=f"Model{OSC0}")
        await pilot.pause()
        note = list(app._notifications)[-1]
        # Safe, and shown as written: the brackets are not valid markup, so they are not read as markup.
        assert (note.message, note.title, note.markup) == (f"could not read {SHOWN_STEM}.gguf [/]", "Model", False)
        assert unsafe(screen_text(app)) == set()


@run_async
async def test_the_status_line_shows_a_safe_model_name() -> None:
    app = make_app([])
    async with app.run_test(size=(80, 24)) as pilot:
        app.status_line.set_model(f"[b]{HOSTILE_NAME}")
        await pilot.pause()
        assert str(app.query_one("#status-model").render()) == f"model: [b]{SHOWN_NAME}"


@run_async
async def test_a_model_reply_with_escapes_is_shown_safe(tmp_path: Path) -> None:
    tokens = ("Hi", OSC52, " there", CSI, "\x1b", "]0;pwn\x07", "!")  # the last sequence split over two tokens
    app = chat_app(tmp_path, chat_backend=lambda emit: FakeBackend(emit, tokens))
    async with app.run_test(size=(80, 24)) as pilot:
        app.chat_with(tmp_path / f"{FILE_STEM}.gguf", FILE_STEM)
        await wait_idle(pilot)
        await send(pilot, "hello")
        await wait_idle(pilot)
        bubbles = chat_pane(app).column.view.bubbles
        # The reply's end redraws the whole text, where the split sequence is whole again and goes entirely.
        assert [b.markdown.source for b in bubbles] == ["hello", "Hi there!"]
        shown = screen_text(app)
        assert unsafe(shown) == set()
        assert "Hi there!" in shown


@run_async
async def test_streamed_fragments_are_safe() -> None:
    class Host(App):
        def compose(self) -> ComposeResult:
            yield SafeMarkdown(f"start{OSC52} ")

    app = Host()
    async with app.run_test() as pilot:
        markdown = app.query_one(SafeMarkdown)
        await markdown.append("a\x1b")  # an ESC at the end of a fragment ...
        await markdown.append("]0;x\x07b")  # ... leaves only text in the next
        await pilot.pause()
        assert markdown.source == "start a]0;xb"
        await markdown.update(f"new{CSI}text")
        assert markdown.source == "newtext"


# --- the TUI's last-resort guard ----------------------------------------------------------------------------------

def _boom() -> None:
    raise RuntimeError(f"boom{OSC0}")


@run_async
async def test_the_guard_keeps_the_app_up_after_a_handler_a_worker_and_a_timer_fail(isolated_home: Path) -> None:
    app = make_app([], crash_guard=True)
    app.action_help = _boom  # F1's action runs in the app's own message loop: unguarded, the app would freeze
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        await pilot.press("f3")  # still answers keys
        await pilot.pause()
        assert app.current_pane_id() == "models"
        worker = app.run_worker(_boom, thread=True)  # a worker's exception (exit_on_error, Textual's default)
        await until(pilot, lambda: worker.is_finished, "the worker failing")
        app.set_timer(0.01, _boom)
        status = app.status_line
        status.call_later(_boom)  # a widget's own message loop
        await pilot.pause(0.1)
        alive: list[bool] = []
        status.call_later(lambda: alive.append(True))
        await until(pilot, lambda: bool(alive), "the status line still handling messages")
        assert app.is_running and app.return_code is None
        assert len(app.unexpected_errors) == 4
        log = crash_log_path()
        notes = [n.message for n in app._notifications]
        # The same failure is notified once (not once per timer tick); the log has every traceback.
        assert notes == [f"unexpected error: RuntimeError: boom; details in {log}"]
        assert log.read_text().count("Traceback (most recent call last)") == 1
        assert unsafe(screen_text(app)) == set()


@run_async
async def test_a_storm_of_errors_ends_the_app_with_one_line(isolated_home: Path) -> None:
    app = make_app([], crash_guard=True)
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(20):
            app.call_later(_boom)
        await pilot.pause(0.2)
    assert app.return_code == 2
    assert app.fatal_line == f"unexpected error: RuntimeError: boom; details in {crash_log_path()}"
    assert app._exit_renderables == []  # no traceback either


def test_headless_without_the_guard_an_error_fails_the_test_as_textual_makes_it() -> None:
    app = make_app([])

    async def run() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            app.call_later(_boom)
            await pilot.pause()

    with pytest.raises(RuntimeError, match="boom"):
        run_async(run)()
    assert not isinstance(app, TuillmApp) or not app.guarding


# --- the other panes' text ----------------------------------------------------------------------------------------

def test_train_preview_text_is_safe(tmp_path: Path) -> None:
    from tuillm.core.train.preview import PROMPT, TRAINED, Preview, PreviewExample
    from tuillm.tui.panes.train_preview import preview_text

    example = PreviewExample(line=1, pieces=[(f"user: hi{CSI}\n", PROMPT), (f"ok{OSC52}\tdone", TRAINED)], tokens=6,
                             trained_tokens=2)
    preview = Preview(tmp_path / f"{FILE_STEM}.jsonl", "chat", 1, f"the model's{OSC0}", [example])
    text = preview_text(preview, 512).plain
    assert unsafe(text.replace("\t", "")) == set()
    assert text.splitlines()[0] == f"{SHOWN_STEM}.jsonl: 1 examples, chat format, template: the model's"
    assert text.endswith("user: hi\nok\tdone\n")


def test_convert_view_texts_are_safe(tmp_path: Path) -> None:
    from tuillm.tui.panes import convert_view as view

    assert view.kept_text([tmp_path / f"{FILE_STEM}-q8_0.gguf"]) == f"{SHOWN_STEM}-q8_0.gguf"
    assert view.progress_text(f"quantize{CSI}", f"writing {FILE_STEM}") == f"quantize: writing {SHOWN_STEM}"
    options = view.type_options({}, FILE_STEM, set())
    assert all(unsafe(str(o.prompt)) == set() and SHOWN_STEM in str(o.prompt) for o in options)


def test_chat_titles_and_roles_are_safe() -> None:
    from tuillm.tui.widgets.chat_list import short_title
    from tuillm.tui.widgets.chat_messages import bubble_header

    assert short_title(f"Hi{OSC52}\nthere{CSI}") == "Hi there"
    assert short_title(f"{OSC0}{'x' * 40}") == "x" * 21 + "…"
    assert bubble_header(f"tool{OSC0}\n", True, None) == "tool"  # a role from a stored row
    assert bubble_header("assistant", True, None) == "Assistant"


def test_model_details_keys_values_and_template_are_safe(models_dir: Path) -> None:
    from tuillm.tui.widgets.model_details import _table, metadata_fields, template_preview

    fields = dict(metadata_fields(models_dir / "evil.gguf"))
    assert fields["general.name"] == HOSTILE_NAME  # the data as read; made safe where it is shown
    table = _table([(f"key{OSC0}", f"value{CSI}\nnext"), *fields.items()])
    shown = [cell.plain for column in table.columns for cell in column._cells]
    assert shown[0] == "key" and "value next" in shown and SHOWN_NAME in shown
    assert unsafe("".join(shown)) == set()
    assert template_preview(f"a{OSC52}\n{CSI}b\x07") == "a\nb"


@pytest.mark.parametrize("argv", [["quantize", "x.gguf", "--type", f"q4{CSI}{OSC52}"],
                                  ["convert", "x", "--type", f"{OSC0}f16{C1}"]])
def test_argparse_quotes_a_hostile_value_as_plain_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main(argv)
    out, err = capsys.readouterr()
    assert (ended.value.code, out, unsafe(err)) == (2, "", set())
    assert err.splitlines()[-1].startswith(f"tuillm {argv[0]}: error: argument ")


@pytest.mark.parametrize(("tty", "shown"), [(False, f"/m/{FILE_STEM}.gguf"), (True, f"/m/{SHOWN_STEM}.gguf")])
def test_a_result_path_is_exact_for_scripts_and_safe_on_a_terminal(tty: bool, shown: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(out, "isatty", lambda: tty)
    monkeypatch.setattr("sys.stdout", out)
    print_path(Path(f"/m/{FILE_STEM}.gguf"))
    assert out.getvalue() == shown + "\n"
