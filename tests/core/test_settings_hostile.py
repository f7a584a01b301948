"""Hostile settings files: each bad value or file is one line naming it, the defaults run, and what is saved back
is TOML a strict reader takes."""

from __future__ import annotations

import errno
import tomllib
from pathlib import Path

import pytest

from tuillm.core import paths, settings_file
from tuillm.core.settings import Config, ModelDefaults, backup_path, default_model_dirs, load_config, save_config

INT64 = 1 << 63


def _ints(value: object) -> list[int]:
    if isinstance(value, dict):
        return [i for v in value.values() for i in _ints(v)]
    if isinstance(value, list):
        return [i for v in value for i in _ints(v)]
    return [value] if isinstance(value, int) and not isinstance(value, bool) else []


def test_a_context_past_64_bits_is_refused_and_never_saved(tmp_path: Path) -> None:
    # tomllib reads 2**70; TOML's integers are 64-bit, and a saved 2**70 was a file strict readers refuse.
    file = tmp_path / "c.toml"
    file.write_text(f'[load]\nctx = {2 ** 70}\n[model."/m.gguf"]\nctx = {2 ** 64}\n')
    config = load_config(file)
    assert config.default_ctx == 4096 and config.model_defaults == {}
    assert f"load.ctx: must be a whole number at least 16 that fits in 64 bits, not {2 ** 70}" in config.problem
    assert 'model."/m.gguf".ctx: must be a whole number at least 16 that fits in 64 bits' in config.problem
    file.write_text(f"[load]\nctx = {INT64 - 1}\n")  # the largest TOML integer is still a context (memory refuses it)
    assert load_config(file).default_ctx == INT64 - 1
    save_config(load_config(file))
    assert all(-INT64 <= i < INT64 for i in _ints(tomllib.loads(file.read_text(encoding="utf-8"))))


def test_huge_values_and_names_are_echoed_cut(tmp_path: Path) -> None:
    # A megabyte of key name or value was repeated whole: a notification (or stderr line) of 40,000 characters.
    file = tmp_path / "c.toml"
    long = "m" * 5000
    file.write_text(f'{long} = 1\n[ui]\ntheme = "{" " * 5000}"\n[keys]\n"{long}" = [{"1," * 5000}]\n[model]\n'
                    f'"{long}" = 3\n')
    problem = load_config(file).problem
    assert "ui.theme: must be a theme name" in problem and f'keys."{"m" * 20}' in problem
    assert "unknown keys" in problem and len(problem) < 1000


def test_an_oversized_file_is_refused_and_kept_when_saving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A 100 MB file took seconds and a GiB to parse before the app could start; the bound is checked, not the figure.
    monkeypatch.setattr(settings_file, "MAX_FILE_BYTES", 1 << 20)
    file = tmp_path / "c.toml"
    text = "[load]\nctx = 2048\n" + "# padding\n" * 110_000
    file.write_text(text)
    config = load_config(file)
    assert config.default_ctx == 4096
    assert config.problem == f"{file}: larger than 1 MiB, not a settings file; using defaults"
    save_config(config)
    assert backup_path(file).read_text() == text and tomllib.loads(file.read_text())["load"]["ctx"] == 4096


def test_a_byte_order_mark_is_read_and_bytes_not_utf8_name_their_line(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_bytes(b"\xef\xbb\xbf[load]\nctx = 2048\n")  # Notepad's UTF-8: "Invalid statement (at line 1, column 1)"
    config = load_config(file)
    assert config.problem is None and config.default_ctx == 2048
    file.write_bytes(b'[load]\nctx = 2048\n[ui]\ntheme = "caf\xe9"\n')  # Latin-1
    assert load_config(file).problem == f"{file}: not UTF-8 text (line 4); save it as UTF-8; using defaults"


def test_folder_names_no_folder_can_have_are_skipped(tmp_path: Path) -> None:
    # "" was the folder tuillm started in (scanned without a word); a NUL cannot be in any path.
    file = tmp_path / "c.toml"
    file.write_text(f'[models]\ndirs = ["", "/a\\u0000b", "{tmp_path}", "  "]\n')
    config = load_config(file)
    assert config.model_dirs == [tmp_path]
    assert "models.dirs: entry 1 ('') is no folder name; skipped, and 2 more" in config.problem


def test_a_theme_with_control_characters_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[ui]\ntheme = "\\u001b]0;title\\u0007"\n')
    config = load_config(file)
    assert config.theme is None and "ui.theme: must be a theme name, not '\\x1b]0;title\\x07'" in config.problem


def test_the_xdg_file_being_a_folder_is_reported(isolated_home: Path) -> None:
    paths.config_file().mkdir(parents=True)
    config = load_config()
    assert config.problem == f"{paths.config_file()}: not a regular file; using defaults"
    assert config.model_dirs == default_model_dirs()


def test_a_folder_whose_name_is_not_utf8_is_a_write_error(tmp_path: Path) -> None:
    # Python holds such a name's bytes as lone surrogates: the write raised UnicodeEncodeError past every front
    # end's OSError handler (a crash of the Settings dialog and of the Models pane's "add folder").
    file = tmp_path / "c.toml"
    file.write_text("[load]\nctx = 2048\n")
    config = Config(model_dirs=[tmp_path / "mod\udce9les"], path=file)
    config.model_defaults["/m.gguf"] = ModelDefaults(ctx=1024)
    with pytest.raises(OSError) as err:
        save_config(config)
    assert err.value.errno == errno.EILSEQ and "not UTF-8, which the settings file cannot hold" in err.value.strerror
    assert "mod\\udce9les" in err.value.strerror
    assert file.read_text() == "[load]\nctx = 2048\n" and not list(tmp_path.glob(".*tmp"))


def test_odd_toml_types_in_dirs(tmp_path: Path) -> None:
    # One number among the paths refused the whole list: the default folders ran, and the next save wrote them over
    # the user's. One string is one folder (as OLLAMA_MODELS names one); a table is still no list.
    file = tmp_path / "c.toml"
    file.write_text('[models]\ndirs = ["~/m", 3, ["x"], {a = 1}, "m2"]\n')
    config = load_config(file)
    assert config.model_dirs == [Path.home() / "m", tmp_path / "m2"]
    assert config.problem == f"{file}: models.dirs: entry 2 (3) is no folder name; skipped, and 2 more"
    save_config(config)
    assert tomllib.loads(file.read_text())["models"]["dirs"] == ["~/m", "m2"]
    file.write_text('[models]\ndirs = "~/m"\n')
    config = load_config(file)
    assert config.model_dirs == [Path.home() / "m"] and config.problem is None
    save_config(config)
    assert tomllib.loads(file.read_text())["models"]["dirs"] == ["~/m"]
    file.write_text("[models]\ndirs = []\n")  # no folders of one's own: none, not the defaults
    assert load_config(file).model_dirs == []
    file.write_text("[models.dirs]\na = 1\n")
    config = load_config(file)
    assert config.model_dirs == default_model_dirs()
    assert config.problem == f"{file}: models.dirs must be a list of paths; using the default folders"


def _dotfiles(tmp_path: Path) -> tuple[Path, Path]:
    """A settings file kept in a dotfiles folder, linked in as the XDG one: (the link, its target)."""
    target = tmp_path / "dotfiles" / "tuillm.toml"
    target.parent.mkdir()
    link = paths.config_file()
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    return link, target


def test_a_symlinked_file_is_written_through_the_link(tmp_path: Path) -> None:
    # The save replaced the link with a plain file: the dotfiles repository lost the change and the link.
    link, target = _dotfiles(tmp_path)
    target.write_text('[models]\ndirs = ["models"]\n')
    config = load_config()
    # Relative names are read from the link's folder, the file as the user named it (as git reads a path relative to
    # the config file it opened): ~/.config/tuillm/models, wherever the dotfiles live.
    assert config.model_dirs == [paths.config_dir() / "models"]
    config.default_ctx = 2048
    assert save_config(config) == link
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert tomllib.loads(target.read_text()) == tomllib.loads(link.read_text())
    assert tomllib.loads(target.read_text())["models"]["dirs"] == ["models"]  # written as it was
    assert load_config().default_ctx == 2048 and not list(target.parent.glob(".*tmp"))


def test_a_dangling_link_gets_its_target_and_a_loop_is_a_write_error(tmp_path: Path) -> None:
    link, target = _dotfiles(tmp_path)
    config = load_config()  # the XDG file not made yet: defaults, without a word
    assert config.problem is None
    save_config(config)
    assert link.is_symlink() and tomllib.loads(target.read_text())["load"]["ctx"] == 4096
    target.unlink()
    target.symlink_to(link)  # a loop: link -> target -> link
    config = load_config()
    assert config.problem == f"{link}: a loop of symbolic links; using defaults"  # was silence
    with pytest.raises(OSError) as err:
        save_config(config)
    assert err.value.errno == errno.ELOOP and link.is_symlink() and target.is_symlink()


def test_a_link_to_an_unreadable_file_is_backed_up_beside_its_target(tmp_path: Path) -> None:
    link, target = _dotfiles(tmp_path)
    target.write_text("[load\nctx = 1\n")
    config = load_config()
    assert "using defaults" in config.problem
    save_config(config)
    assert backup_path(link) == target.with_name("tuillm.toml.bak").resolve()
    assert backup_path(link).read_text() == "[load\nctx = 1\n" and link.is_symlink()


def test_a_config_that_is_a_folder_is_a_write_error_and_stays(tmp_path: Path) -> None:
    folder = tmp_path / "c.toml"
    (folder / "inside").mkdir(parents=True)
    config = load_config(folder)
    assert config.problem == f"{folder}: not a regular file; using defaults"
    with pytest.raises(OSError):  # the front ends say "could not write ..." (IsADirectoryError is one)
        save_config(config)
    assert (folder / "inside").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_a_config_path_the_system_cannot_look_at_is_reported(tmp_path: Path) -> None:
    # Path.is_file raised for a name too long (a traceback at start) and for a NUL it said nothing useful.
    long = tmp_path / ("x" * 300)
    assert load_config(long).problem == f"{long}: cannot read (File name too long); using defaults"
    assert load_config("a\0b").problem.endswith(": no such config file; using defaults")


def test_an_unreadable_file_is_reported_and_kept_when_saving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod 000 stops no one running as root (this suite's usual case): the read's PermissionError is made here.
    file = tmp_path / "c.toml"
    file.write_text("[load]\nctx = 2048\n")
    real_open = Path.open

    def refusing(self: Path, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if self == file and args[:1] == ("rb",):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refusing)
    config = load_config(file)
    assert config.problem == f"{file}: cannot read (Permission denied); using defaults"
    save_config(config)
    monkeypatch.undo()
    assert backup_path(file).read_text() == "[load]\nctx = 2048\n"
    assert tomllib.loads(file.read_text())["load"]["ctx"] == 4096
