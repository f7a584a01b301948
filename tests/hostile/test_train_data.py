"""Hostile training data: files `tuillm train` refuses in one exact line (exit 1, no traceback, nothing written)
before the base model is even looked at, and valid files it once refused or misnumbered (a BOM, U+2028 in a string).
The base named here does not exist: a data error must come first."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.train.jsonl_rows import CHATML, chars, write
from tuillm.core.chat.template import ChatTemplate
from tuillm.core.train.data import DatasetError, encode_dataset, load_dataset
from tuillm.core.train.jsonl import MAX_LINE_BYTES
from tuillm.core.train.pairs import load_pairs
from tuillm.tui.cli import main

ROW = '{"prompt": "a", "completion": "b"}'


def train_error(data: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """``tuillm train`` on ``data``: exit 1, one line on stderr without a traceback, no output folder."""
    out = data.parent / "out"
    rc = main(["train", str(data.parent / "no-base"), "--data", str(data), "-o", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("tuillm: "), err
    assert not out.exists()
    return err.removeprefix("tuillm: ").rstrip("\n")


@pytest.mark.parametrize(("lines", "expected"), [
    # Past Python's 4,300-digit limit json.loads raises a plain ValueError: it was "unexpected error: ValueError".
    ([ROW, '{"prompt": "a", "completion": ' + "9" * 5000 + "}", ROW], "1 invalid JSON line (line 2); each line must "
                                                                      "be one JSON object"),
    # A lone surrogate reached the tokenizer: "unexpected error: TypeError: TextEncodeInput must be ...".
    ([ROW, '{"prompt": "\\ud800 x", "completion": "b"}', ROW, '{"prompt": "\\udfff", "completion": "b"}'],
     "2 lines with a lone UTF-16 surrogate escape (lines 2, 4), which is no text"),
    # A .json file holding one array was "1 line not a JSON object (line 1)": not what to do about it.
    (['[{"text": "a"}, {"text": "b"}]'], "1 line not a JSON object (line 1); each line must be one JSON object "
                                         "(JSON Lines, not one JSON array)"),
    # Keys were printed as they are: a newline in one split the error over three lines.
    (['{"a\\nb\\nc": 1, "\\u001b[31mred": 2}'],
     "line 1: unknown format (keys: \\x1b[31mred, a\\nb\\nc); expected instruction/output, messages, conversations, "
     "prompt/completion or text"),
    (['{"messages": [{"role": "wizard\\u001b[2J\\n", "content": "x"}]}'],
     "1 example not in the messages format of line 1 (line 1; line 1: message role 'wizard\\x1b[2J\\n' (expected "
     "system/user/assistant/tool))"),
])
def test_bad_rows_are_one_exact_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str],
                                     expected: str) -> None:
    data = write(tmp_path / "d.jsonl", lines)
    assert train_error(data, capsys) == f"{data}: {expected}"


def test_bytes_that_are_not_utf8_are_named_by_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_bytes(f"{ROW}\n{ROW}\n".encode() + b'{"prompt": "\xff\xfe", "completion": "b"}\n')
    assert train_error(data, capsys) == f"{data}: not UTF-8 text (line 3)"


def test_a_file_of_one_endless_line_is_refused_without_reading_it_whole(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    with data.open("wb") as f:  # sparse: a 1 TiB file of zeros was "unexpected error: MemoryError"
        f.truncate(4 * MAX_LINE_BYTES)
    assert train_error(data, capsys) == (f"{data}: line 1 is longer than 16 MiB; each line must be one example "
                                         "(a JSON object)")


def test_pairs_name_hostile_keys_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write(tmp_path / "p.jsonl", ['{"x\\ny": 1}'])
    assert train_error(data, capsys, "--method", "dpo") == (
        f"{data}: line 1: not a preference pair (keys: x\\ny); --method dpo takes prompt/chosen/rejected rows, or "
        "chosen/rejected message lists")


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85"])
def test_line_ends_inside_strings_are_text(tmp_path: Path, sep: str) -> None:
    # str.splitlines cut these rows in two: "2 invalid JSON lines (lines 1, 2)" for a valid file.
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": f"a{sep}b", "completion": "c"}, ensure_ascii=False) + "\n" + ROW + "\n",
                    encoding="utf-8")
    dataset = load_dataset(data)
    assert [r.line for r in dataset.records] == [1, 2]
    assert dataset.records[0].messages[0]["content"] == f"a{sep}b"


def test_a_bom_and_crlf_are_read(tmp_path: Path) -> None:
    # Notepad's UTF-8 (with a BOM): line 1 was "1 invalid JSON line (line 1)".
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + f"{ROW}\r\n\r\n{ROW}\r\n".encode())
    assert [r.line for r in load_dataset(data).records] == [1, 3]
    pairs = tmp_path / "p.jsonl"
    pairs.write_bytes(b"\xef\xbb\xbf" + b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
    assert len(load_pairs(pairs).records) == 1


def test_a_fifo_or_a_folder_does_not_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    assert train_error(fifo, capsys) == f"{fifo}: not a file"
    (tmp_path / "dir.jsonl").mkdir()
    assert train_error(tmp_path / "dir.jsonl", capsys) == f"{tmp_path / 'dir.jsonl'}: not a file"


def test_a_row_the_template_refuses_is_named_by_line(tmp_path: Path) -> None:
    # The error said only "chat template (t): roles must alternate": which of thousands of rows?
    strict = ChatTemplate("{% for m in messages %}{% if m.content == 'bad' %}{{ raise_exception('roles must "
                          "alternate') }}{% endif %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                          "{% if add_generation_prompt %}assistant: {% endif %}", name="t")
    rows = [{"messages": [{"role": "user", "content": c}, {"role": "assistant", "content": "ok"}]}
            for c in ("fine", "fine", "bad")]
    data = write(tmp_path / "d.jsonl", rows)
    with pytest.raises(DatasetError) as err:
        encode_dataset(load_dataset(data), chars, strict, 64)
    assert str(err.value) == f"{data}: line 3: chat template (t): roles must alternate"
    with pytest.raises(DatasetError) as err:
        encode_dataset(load_dataset(data), chars, None, 64)
    assert str(err.value) == f"{data}: line 1: the model has no chat template; use the text format ({{\"text\": ...}})"
    assert len(encode_dataset(load_dataset(write(tmp_path / "ok.jsonl", rows[:2])), chars, CHATML, 64).examples) == 2


KEYS = ["text", "prompt", "completion", "instruction", "input", "output", "system", "messages", "conversations",
        "role", "content", "from", "value", "chosen", "rejected"]
texts = st.text(alphabet=st.sampled_from("ab \n\r\x1b\x85\u2028\u2029\ufeff\"\\"), max_size=6) | st.text(max_size=6)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | texts, inner, max_size=4),
    max_leaves=20)
rows = st.lists(values.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"))
                | st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=6)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=rows, crlf=st.booleans(), bom=st.booleans())
def test_any_bytes_are_examples_or_one_line(tmp_path: Path, lines: list[bytes], crlf: bool, bom: bool) -> None:
    """The readers of training files, for any bytes: a record for each line that is not blank, numbered as an editor
    numbers lines, or one DatasetError line without a control character; never another exception."""
    data = tmp_path / "d.jsonl"
    data.write_bytes((b"\xef\xbb\xbf" if bom else b"") + (b"\r\n" if crlf else b"\n").join(lines))
    for reader in (load_dataset, load_pairs):
        try:
            records = reader(data).records
        except DatasetError as exc:
            assert "\n" not in str(exc) and "\x1b" not in str(exc)
        else:
            assert [r.line for r in records] == [i for i, line in enumerate(lines, 1) if line.strip()]
