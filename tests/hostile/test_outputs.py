"""Hostile outputs: no command writes over its own inputs (the file itself, a link to it, a file inside the
checkpoint, adapter or base folder, a folder that holds them), an existing output is replaced only with --force (CLI)
or after a yes (TUI), temporaries of a killed run are removed by the next run, and a full disk during training
stops it with one line, the last checkpoint kept. Each refusal: the exact line, exit 1, no traceback, the inputs
byte for byte as they were, nothing left behind."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tests.core.train_facts import write_fact_dataset
from tuillm.convert.errors import ConvertError
from tuillm.convert.output import check_output, remove_stale, temp_name
from tuillm.tui.cli import main


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file under ``root`` with its bytes (folders and links by name): what 'nothing changed' compares."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = os.readlink(path).encode()
        elif path.is_file():
            found[key] = path.read_bytes()
        else:
            found[key] = None
    return found


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A checkpoint folder B, an adapter folder A, a GGUF file X, data D/d.jsonl and a file that exists: the
    refusals come before any of them is read, so their bytes only need to be theirs."""
    (tmp_path / "B").mkdir()
    (tmp_path / "B" / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "B" / "model.safetensors").write_bytes(b"\x08" + bytes(15))
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "adapter_config.json").write_text('{"r": 4}')
    (tmp_path / "A" / "adapter_model.safetensors").write_bytes(b"adapter weights")
    (tmp_path / "A" / "README.md").write_text("my notes")
    (tmp_path / "X.gguf").write_bytes(b"GGUF" + bytes(60))
    (tmp_path / "X-link.gguf").symlink_to(tmp_path / "X.gguf")
    os.link(tmp_path / "X.gguf", tmp_path / "X-hard.gguf")
    (tmp_path / "D").mkdir()
    write_fact_dataset(tmp_path / "D" / "d.jsonl", 4)
    (tmp_path / "old.gguf").write_bytes(b"an earlier output")
    os.mkfifo(tmp_path / "pipe")  # as /dev/null would be: --force must not put a file in its place
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    return tmp_path


INSIDE = "output inside the input folder"
SAME = "output would overwrite the input"
EXISTS = "already exists; --force replaces it"
SPECIAL = "not a regular file (a device, pipe or socket); choose another output"
LOOP = "a loop of symbolic links"
LONG, TOO_LONG = "n" * 300, "a name too long for the file system"  # a name no file system holds (255 bytes)
# (the command line, with {t} for the test folder; the expected line after "tuillm: ")
REFUSALS = [
    ("convert {t}/B -o {t}/B/model.safetensors", f"{{t}}/B/model.safetensors: {INSIDE} {{t}}/B"),
    ("convert {t}/B -o {t}/B/config.json", f"{{t}}/B/config.json: {INSIDE} {{t}}/B"),
    ("convert {t}/B -o {t}/B/extra.safetensors", f"{{t}}/B/extra.safetensors: {INSIDE} {{t}}/B"),
    ("convert {t}/B -o {t}/B/m-{{type}}.safetensors --type q8_0,f16", f"{{t}}/B/m-q8_0.safetensors: {INSIDE} {{t}}/B"),
    ("convert {t}/B -o {t}/old.gguf", f"{{t}}/old.gguf: {EXISTS}"),
    ("quantize {t}/X.gguf -o {t}/X.gguf --type q4_0", f"{{t}}/X.gguf: {SAME}"),
    ("quantize {t}/X.gguf -o {t}/X-link.gguf --type q4_0", f"{{t}}/X-link.gguf: {SAME}"),
    ("quantize {t}/X.gguf -o {t}/X-hard.gguf --type q4_0", f"{{t}}/X-hard.gguf: {SAME}"),
    ("quantize {t}/X-link.gguf -o {t}/X.gguf --type q4_k_m", f"{{t}}/X.gguf: {SAME}"),
    ("quantize {t}/X.gguf -o {t}/old.gguf --type q4_0", f"{{t}}/old.gguf: {EXISTS}"),
    ("merge {t}/B {t}/A -o {t}/B/model.safetensors", f"{{t}}/B/model.safetensors: {INSIDE} {{t}}/B"),
    ("merge {t}/B {t}/A -o {t}/A/adapter_model.safetensors", f"{{t}}/A/adapter_model.safetensors: {INSIDE} {{t}}/A"),
    ("merge {t}/X.gguf {t}/A -o {t}/X.gguf", f"{{t}}/X.gguf: {SAME}"),
    ("merge {t}/B {t}/A -o {t}/B", "{t}/B: is a folder (give the output file name)"),
    ("merge {t}/B {t}/A -o {t}/old.gguf", f"{{t}}/old.gguf: {EXISTS}"),
    ("export-lora {t}/A --base {t}/B -o {t}/A/adapter_model.safetensors",
     f"{{t}}/A/adapter_model.safetensors: {INSIDE} {{t}}/A"),
    ("export-lora {t}/A --base {t}/B -o {t}/A/README.md", f"{{t}}/A/README.md: {INSIDE} {{t}}/A"),
    ("export-lora {t}/A --base {t}/B -o {t}/B/model.safetensors", f"{{t}}/B/model.safetensors: {INSIDE} {{t}}/B"),
    ("export-lora {t}/A --base {t}/X.gguf -o {t}/X-link.gguf", f"{{t}}/X-link.gguf: {SAME}"),
    ("export-lora {t}/A --base {t}/B -o {t}/old.gguf", f"{{t}}/old.gguf: {EXISTS}"),
    ("train {t}/B --data {t}/D/d.jsonl -o {t}/B", f"{{t}}/B: {SAME}"),
    ("train {t}/B --data {t}/D/d.jsonl -o {t}/B/adapter", f"{{t}}/B/adapter: {INSIDE} {{t}}/B"),
    ("train {t}/B --data {t}/D/d.jsonl -o {t}/D", "{t}/D: output folder holds the input {t}/D/d.jsonl"),
    ("train {t}/B --data {t}/D/d.jsonl -o {t}", "{t}: output folder holds the input {t}/B"),
    ("train {t}/B --data {t}/D/d.jsonl -o {t}/A",
     "{t}/A: already holds a trained adapter; choose another output folder, or --force replaces it"),
    ("quantize {t}/X.gguf -o {t}/pipe --type q4_0 --force", f"{{t}}/pipe: {SPECIAL}"),
    ("convert {t}/B -o {t}/pipe", f"{{t}}/pipe: {SPECIAL}"),
    ("merge {t}/B {t}/A -o {t}/pipe --force", f"{{t}}/pipe: {SPECIAL}"),
    ("export-lora {t}/A --base {t}/B -o {t}/pipe --force", f"{{t}}/pipe: {SPECIAL}"),
    ("convert {t}/B -o {t}/loop1", f"{{t}}/loop1: {LOOP}"),
    ("quantize {t}/X.gguf -o {t}/loop1 --type q4_0", f"{{t}}/loop1: {LOOP}"),
    ("merge {t}/B {t}/A -o {t}/loop1", f"{{t}}/loop1: {LOOP}"),
    ("export-lora {t}/A --base {t}/B -o {t}/loop1", f"{{t}}/loop1: {LOOP}"),
    ("merge {t}/B {t}/loop1 -o {t}/m.gguf", f"{{t}}/loop1: {LOOP}"),
    ("export-lora {t}/loop1 --base {t}/B -o {t}/e.gguf", f"{{t}}/loop1: {LOOP}"),
    # inputs that are there but are no file or folder: not "no such file"
    ("convert {t}/pipe -o {t}/o.gguf", "{t}/pipe: not a regular file or folder (a pipe, socket or device)"),
    ("quantize {t}/loop1 -o {t}/o.gguf --type q4_0", f"{{t}}/loop1: {LOOP}"),
    ("info {t}/loop1", f"{{t}}/loop1: {LOOP}"),
    ("quants {t}/pipe --types q8_0", "{t}/pipe: not a regular file or folder (a pipe, socket or device)"),
    # names too long: each was "unexpected error: OSError: [Errno 36] File name too long" (pathlib's is_dir())
    (f"quantize {{t}}/X.gguf -o {{t}}/{LONG}.gguf --type q4_0", f"{{t}}/{LONG}.gguf: {TOO_LONG}"),
    (f"convert {{t}}/B -o {{t}}/{LONG}/ --type q4_0", f"{{t}}/{LONG}: {TOO_LONG}"),
    (f"quants {{t}}/X.gguf --types q8_0 --output-dir {{t}}/{LONG}", f"--output-dir: {{t}}/{LONG}: {TOO_LONG}"),
    (f"quants {{t}}/X.gguf --types q4_0 --imatrix {{t}}/{LONG}",
     f"--imatrix: {{t}}/{LONG}: cannot read it (File name too long)"),
]


@pytest.mark.parametrize(("argv", "line"), REFUSALS,
                         ids=[a.replace("{t}/", "").replace(LONG, "LONG") for a, _ in REFUSALS])
def test_refused_with_one_line_and_nothing_touched(inputs: Path, capsys: pytest.CaptureFixture[str],
                                                   argv: str, line: str) -> None:
    before = tree(inputs)
    code, out, err = run_cli(argv.format(t=inputs).split(), capsys)
    assert (code, out, err) == (1, "", f"tuillm: {line.format(t=inputs)}\n")
    assert tree(inputs) == before  # inputs byte for byte, and nothing new (no temporary, no folder)


NO_FILE_THERE = [
    "quantize {gguf} -o /proc/x.gguf --type q8_0 --quiet",
    "quants {gguf} --types q8_0 --imatrix none --output-dir /proc/tuillm-quants",
    "train {t}/B --data {t}/D/d.jsonl -o /proc/tuillm-adapter",
]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("argv", NO_FILE_THERE, ids=[a.split()[0] for a in NO_FILE_THERE])
def test_a_folder_that_takes_no_file_is_named_so(demo_gguf: Path, inputs: Path, capsys: pytest.CaptureFixture[str],
                                                 argv: str) -> None:
    # /proc exists but answers ENOENT to a new file: "no such folder" would send the user looking for it. Each
    # command says it in the same words (the probe before training, the sweep's folder, a file's write).
    code, _, err = run_cli(argv.format(gguf=demo_gguf, t=inputs).split(), capsys)
    assert code == 1 and err.splitlines()[-1] == "tuillm: /proc: no new file can be made there"


def test_a_sweep_folder_that_is_a_loop_is_named_so(demo_gguf: Path, inputs: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["quants", str(demo_gguf), "--types", "q8_0", "--imatrix", "none", "--output-dir",
                            str(inputs / "loop1")], capsys)
    assert (code, err) == (1, f"tuillm: {inputs / 'loop1'}: {LOOP}\n")  # was "File exists"


@pytest.mark.parametrize(("out", "ins", "allowed"), [
    ("A/A-q8_0.gguf", ["A", "B"], True),  # the Train pane's merge: a GGUF beside the adapter's own files
    ("B/B-Q8_0.gguf", ["B"], True),  # `convert B -o B/`: the GGUF beside the checkpoint
    ("A/sub/x.gguf", ["A"], True),
    ("elsewhere.gguf", ["A", "B", "X.gguf"], True),
    ("A/tokenizer.json", ["A"], False),
    ("A/sub", ["A"], False),  # a folder (training's output) inside an input folder
    ("X.gguf", ["X-link.gguf"], False),
    ("D", ["D/d.jsonl"], False),
])
def test_check_output_rule(inputs: Path, out: str, ins: list[str], allowed: bool) -> None:
    if allowed:
        check_output(inputs / out, [inputs / i for i in ins])
    else:
        with pytest.raises(ConvertError):
            check_output(inputs / out, [inputs / i for i in ins], force=True)


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_a_killed_run_go_live_ones_stay(tmp_path: Path) -> None:
    out = tmp_path / "model.gguf"
    dead = _dead_pid()
    ours = f"tuillm-{dead}"
    stale = [tmp_path / f".model.gguf.{ours}.part", tmp_path / f".model.gguf.{ours}.f16.gguf",
             tmp_path / f"..model.gguf.{ours}.f16.gguf.{ours}.part", tmp_path / f".model.gguf.{ours}.quant"]
    for path in stale:
        path.write_bytes(b"half a file")
    merge_dir = tmp_path / f".model.gguf.{ours}.merge"
    (merge_dir / "sub").mkdir(parents=True)
    (merge_dir / "sub" / "model.safetensors").write_bytes(b"x")
    live = temp_name(out)  # this process's own, in progress
    live.write_bytes(b"being written")
    # A user's own hidden files named alike (a backup keyed by a number that is no running pid) are not ours.
    others = [tmp_path / f".other.gguf.{ours}.part", tmp_path / ".model.gguf.notes", tmp_path / "model.gguf.bak",
              tmp_path / f".model.gguf.{dead}.backup", tmp_path / f".model.gguf.{dead}.part"]
    for path in others:
        path.write_bytes(b"not ours")
    removed = remove_stale(out)
    assert sorted(removed) == sorted([*stale, merge_dir])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [live, *others])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny") / "llama")


def test_force_replaces_and_the_next_run_sweeps(tiny: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny.gguf"
    out.write_bytes(b"an earlier output")
    dead = _dead_pid()
    (tmp_path / f".tiny.gguf.tuillm-{dead}.part").write_bytes(b"left by a killed run")
    before = tree(tiny)
    assert run_cli(["convert", str(tiny), "-o", str(out), "-q", "--type", "q8_0", "--force"], capsys)[:2] == \
        (0, f"{out}\n")
    assert out.read_bytes()[:4] == b"GGUF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.gguf"]
    assert tree(tiny) == before


def _train_args(tiny: Path, tmp_path: Path, out: Path) -> list[str]:
    data = write_fact_dataset(tmp_path / "fact.jsonl", 12)
    return ["train", str(tiny), "--data", str(data), "-o", str(out), "--rank", "4", "--max-len", "64",
            "--batch-size", "2", "--grad-accum", "2", "--epochs", "2", "--save-every", "2", "--seed", "7",
            "--device", "cpu", "-q"]


def test_disk_full_while_training(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The second checkpoint meets a full disk: one line, the first checkpoint whole, no half-written one; with
    space again, --resume finishes the run."""
    from tuillm.core.train import checkpoints

    out = tmp_path / "adapter"
    real = checkpoints.write_file
    written: list[Path] = []

    def disk_full_at_step_4(path: Path, data: bytes) -> None:
        if "step-0000004" in path.parent.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        written.append(path)
        real(path, data)

    monkeypatch.setattr(checkpoints, "write_file", disk_full_at_step_4)
    code, stdout, stderr = run_cli(_train_args(tiny, tmp_path, out), capsys)
    root = out / "checkpoints"
    assert (code, stdout) == (1, "")
    assert stderr == (f"tuillm: {root}: no space left on device; the checkpoint of step 4 was not written; the "
                      f"checkpoint {root}/step-0000002 is kept (free some space, then --resume continues from it)\n")
    assert sorted(p.name for p in root.iterdir()) == ["step-0000002"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]
    assert {p.name for p in written} == {"adapter.safetensors", "optimizer.safetensors", "state.json"}

    monkeypatch.setattr(checkpoints, "write_file", real)
    code, stdout, stderr = run_cli([*_train_args(tiny, tmp_path, out), "--resume"], capsys)
    assert (code, stdout) == (0, f"{out}\n"), stderr
    assert (out / "adapter_config.json").is_file() and not root.exists()


def test_disk_full_writing_the_adapter(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tuillm.core.train import checkpoints

    out = tmp_path / "adapter"
    real = checkpoints.write_file

    def disk_full_for_the_adapter(path: Path, data: bytes) -> None:
        if path.name == checkpoints.TRAINING_FILE:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(checkpoints, "write_file", disk_full_for_the_adapter)
    code, _, stderr = run_cli(_train_args(tiny, tmp_path, out), capsys)
    assert code == 1
    assert stderr == (f"tuillm: {out}: no space left on device; the adapter was not written; the checkpoint "
                      f"{out}/checkpoints/step-0000004 is kept (free some space, then --resume continues from it)\n")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]  # no adapter file, no temporary


# --- the TUI asks before replacing --------------------------------------------------------------------------------


@pytest.mark.slow
def test_convert_pane_asks_before_replacing(tmp_path: Path, demo_gguf: Path) -> None:
    from tests.tui.app_helpers import make_app, run_async, until
    from tests.tui.panes.test_convert import _open_pane, _tick
    from tuillm.tui.screens.confirm import ConfirmScreen

    out = tmp_path / "out"
    out.mkdir()

    @run_async
    async def scenario() -> None:
        app = make_app([tmp_path / "models"])
        async with app.run_test(size=(80, 24)) as pilot:
            pane = await _open_pane(pilot)
            pane.use_source(demo_gguf)
            await until(pilot, lambda: pane.source is not None, "the GGUF's headers")
            pane.query_one("#convert-folder").value = str(out)
            pane.query_one("#convert-report").value = False
            await _tick(pilot, pane, ["q4_0"])
            existing = out / f"{pane.source.name}-Q4_0.gguf"
            existing.write_bytes(b"an earlier output")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
            assert app.screen.question == f"Replace {existing.name} in {out}?"
            await pilot.press("n")
            await pilot.pause()
            assert not pane.running and existing.read_bytes() == b"an earlier output"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question again")
            await pilot.press("y")
            await until(pilot, lambda: pane.running, "the job")
            await until(pilot, lambda: not pane.running, "the end of the job")
            assert pane.last_written == [existing] and existing.read_bytes()[:4] == b"GGUF"
            assert sorted(p.name for p in out.iterdir()) == [existing.name]

    scenario()


@pytest.mark.parametrize("action", ["merge", "export"])
def test_train_pane_asks_before_replacing(tmp_path: Path, action: str) -> None:
    from tests.tui.app_helpers import make_app, run_async
    from tuillm.tui.screens.confirm import ConfirmScreen

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    existing = adapter / ("adapter-q8_0.gguf" if action == "merge" else "adapter-lora-f16.gguf")
    existing.write_bytes(b"an earlier output")

    @run_async
    async def scenario() -> None:
        app = make_app([])
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("f5")
            pane = app.query_one("#pane-train")
            pane.adapter_dir, pane.base_path = adapter, tmp_path / "base"
            getattr(pane, f"action_{action}")()
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen) and app.screen.question == f"Replace {existing}?"
            await pilot.press("n")
            await pilot.pause()
            assert pane.job is None and existing.read_bytes() == b"an earlier output"

    scenario()


@pytest.mark.parametrize(("holds", "question"), [
    ("adapter", "{out} holds a trained adapter. Replace it?"),
    ("checkpoint", "{out} holds checkpoints of an unfinished run (tick Resume to continue it). Start over?"),
])
def test_train_pane_asks_before_training_over_a_run(tmp_path: Path, holds: str, question: str) -> None:
    from tests.tui.app_helpers import make_app, run_async
    from tuillm.tui.screens.confirm import ConfirmScreen

    out = tmp_path / "adapter"
    if holds == "adapter":
        out.mkdir()
        (out / "adapter_config.json").write_text("{}")
    else:
        (out / "checkpoints" / "step-0000002").mkdir(parents=True)
        (out / "checkpoints" / "step-0000002" / "state.json").write_text("{}")
    before = tree(out)
    data = write_fact_dataset(tmp_path / "d.jsonl", 4)

    @run_async
    async def scenario() -> None:
        app = make_app([])
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("f5")
            pane = app.query_one("#pane-train")
            app.query_one("#train-data").value = str(data)
            app.query_one("#train-output").value = str(out)
            await pilot.pause()
            pane.action_start()
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen) and app.screen.question == question.format(out=out)
            await pilot.press("n")
            await pilot.pause()
            assert pane.job is None and tree(out) == before

    scenario()


@pytest.mark.parametrize("out", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"])
def test_a_stream_of_the_process_is_no_output_even_with_force(out: str) -> None:
    # Under pytest fd 1 is a file: /dev/stdout passed as one, and the rename at the end would have replaced the
    # link in /dev (as root) with the GGUF.
    with pytest.raises(ConvertError, match="a stream of this process"):
        check_output(Path(out), [], force=True)


def test_a_killed_runs_half_written_checkpoints_go_a_users_hidden_files_stay(tmp_path: Path) -> None:
    from tuillm.core.train.checkpoints import CHECKPOINTS, remove_stale_temporaries

    dead = _dead_pid()
    root = tmp_path / CHECKPOINTS
    stale = [root / f".step-4.tuillm-{dead}.part", tmp_path / f".adapter.tuillm-{dead}.part"]
    kept = [root / "step-2", root / f".step-4.{dead}.notes", tmp_path / f".adapter.{dead}.backup"]
    for folder in (*stale, *kept):
        folder.mkdir(parents=True)
        (folder / "x").write_bytes(b"x")
    remove_stale_temporaries(tmp_path)
    assert [p for p in stale if p.exists()] == [] and all(p.exists() for p in kept)
