"""A run's set-up reads each data file once.

The front end's check (``check_data``), the record of the data a checkpoint keeps (each file's SHA-256) and the
encoding each read every file again: three reads of a large dataset before the first step. Now one read checks the
records and hashes the bytes they came from; the front end hands what it read to the run. The digest is the one a
separate read of the file's bytes gives (old checkpoints still resume)."""

from __future__ import annotations

import codecs
import json
import threading
from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tests.core.train.test_dpo import preference_rows, write_rows
from tests.core.train_facts import write_fact_dataset
from tuillm.core.events import Cancelled, Event, Log
from tuillm.core.train import jsonl, loop
from tuillm.core.train.jsonl import file_digest, read_digested
from tuillm.core.train.loop import TrainConfig, train
from tuillm.core.train.pairs import check_data
from tuillm.core.train.prepare import read_data
from tuillm.core.train.resume import data_record, datasets_record


class SetUpDone(Exception):
    """Raised where the model would load: the set-up is over."""


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every data file opened for reading (the one seam where the training data is opened), in order; the model
    never loads (``SetUpDone`` instead)."""
    seen: list[Path] = []
    real = jsonl._open

    def counting(path: Path):  # noqa: ANN202
        seen.append(Path(path))
        return real(path)

    def no_model(*args: object, **kwargs: object) -> None:
        raise SetUpDone()

    monkeypatch.setattr(jsonl, "_open", counting)
    monkeypatch.setattr(loop, "lora_model", no_model)
    return seen


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny") / "llama")


def config(tiny: Path, data: list[Path], out: Path, **kw: object) -> TrainConfig:
    base = dict(base=str(tiny), data=[str(p) for p in data], output=str(out), rank=4, max_len=64, batch_size=2,
                max_steps=2, save_every=0, device="cpu", dtype="float32")
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def set_up(run: TrainConfig, datasets: list | None = None) -> list[str]:
    """The run's set-up up to the model's loading; its log lines."""
    events: list[Event] = []
    with pytest.raises(SetUpDone):
        train(run, emit=events.append, datasets=datasets)
    return [e.message for e in events if isinstance(e, Log)]


def test_the_front_ends_check_and_the_set_up_read_each_file_once(tiny: Path, tmp_path: Path,
                                                                 opened: list[Path]) -> None:
    a, b = write_fact_dataset(tmp_path / "a.jsonl", 6), write_fact_dataset(tmp_path / "b.jsonl", 4, seed=1)
    run = config(tiny, [a, b], tmp_path / "out")
    handed = check_data(run.data, run.method)  # as the Train pane does
    logs = set_up(run, handed)
    assert opened == [a, b]  # each once: not again for its SHA-256, nor for the encoding
    assert handed == []  # taken over: the records are freed as they are encoded
    assert "a.jsonl: 6 examples, messages format" in logs and "b.jsonl: 4 examples, messages format" in logs
    opened.clear()
    assert set_up(run) == logs  # nothing handed (the CLI): read once in the set-up
    assert opened == [a, b]


def test_preference_pairs_are_read_once(tiny: Path, tmp_path: Path, opened: list[Path]) -> None:
    pairs = write_rows(tmp_path / "pairs.jsonl", preference_rows(("the sea", "bread", "winter", "cats")))
    run = config(tiny, [pairs], tmp_path / "out", method="dpo")
    logs = set_up(run, check_data(run.data, "dpo"))
    assert opened == [pairs]
    assert "pairs.jsonl: 4 preference pairs, pairs format" in logs


def test_data_read_for_another_run_is_read_again(tiny: Path, tmp_path: Path, opened: list[Path]) -> None:
    a, b = write_fact_dataset(tmp_path / "a.jsonl", 4), write_fact_dataset(tmp_path / "b.jsonl", 4, seed=1)
    run = config(tiny, [a], tmp_path / "out")
    for handed in (check_data([b], "sft"), check_data([a, b], "sft")):
        opened.clear()
        assert [d.path for d in read_data(run, None, handed)] == [a] and opened == [a] and handed == []
    opened.clear()
    pairs = write_rows(tmp_path / "pairs.jsonl", preference_rows(("the sea", "bread")))
    handed = check_data([pairs], "dpo")
    with pytest.raises(jsonl.DatasetError, match="choose the dpo method"):  # read as the run's method takes it
        read_data(config(tiny, [pairs], tmp_path / "out"), None, handed)
    assert opened == [pairs, pairs]


def test_the_digest_of_the_read_is_the_files(tmp_path: Path) -> None:
    row = json.dumps({"text": "a\u2028b"}, ensure_ascii=False).encode()
    for name, raw in (("bom", codecs.BOM_UTF8 + row + b"\n" + row + b"\n"), ("crlf", row + b"\r\n\r\n" + row),
                      ("blank", b"\n\n" + row + b"\n   \n"), ("one", row)):
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(raw)
        objects, digest = read_digested(path)
        assert digest == file_digest(path) and digest.size == len(raw) and len(objects) >= 1, name
        assert datasets_record(check_data([path], "sft")) == data_record([str(path)])


def test_reading_the_run_data_stops_once_cancelled(tiny: Path, tmp_path: Path) -> None:
    data = write_fact_dataset(tmp_path / "d.jsonl", 50)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        read_data(config(tiny, [data], tmp_path / "out"), cancel)
