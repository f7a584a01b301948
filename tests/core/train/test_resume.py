"""A stop while the run is still setting up, and what a resume checks.

A stop (Esc, a quit, SIGTERM in the app) while a large dataset was read or encoded waited for all of it: the set-up
now stops between records. A resume over other data continued silently, and one from a step-2 checkpoint with
``--max-steps 1`` wrote an adapter of "steps: 2": each is now one line, before anything loads."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tests.core.train.jsonl_rows import CHATML, chars
from tests.core.train_facts import write_fact_dataset
from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Event, Progress
from tuillm.core.train import base as train_base
from tuillm.core.train import jsonl, loop, prepare
from tuillm.core.train.data import encode_dataset, load_dataset
from tuillm.core.train.jsonl import read_objects
from tuillm.core.train.loop import TrainConfig, train
from tuillm.core.train.pairs import check_data, encode_pairs, load_pairs
from tuillm.core.train.resume import data_difference, data_record


class Counted:
    """A tokenize callable that counts its calls and sets ``cancel`` at call ``stop_at``."""

    def __init__(self, tokenize, cancel: threading.Event, stop_at: int) -> None:  # noqa: ANN001
        self.tokenize, self.cancel, self.stop_at, self.calls = tokenize, cancel, stop_at, 0

    def __call__(self, text: str) -> list[int]:
        self.calls += 1
        if self.calls == self.stop_at:
            self.cancel.set()
        return self.tokenize(text)


def test_encoding_stops_at_the_next_record_once_cancelled(tmp_path: Path) -> None:
    dataset = load_dataset(write_fact_dataset(tmp_path / "d.jsonl", 500))
    cancel = threading.Event()
    counted = Counted(chars, cancel, stop_at=5)
    with pytest.raises(Cancelled):
        encode_dataset(dataset, counted, CHATML, 64, cancel=cancel)
    assert counted.calls < 10  # the record under way, not the 500 (about 1,000 calls)
    pairs = tmp_path / "p.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Q{i}", "chosen": "yes", "rejected": "no"}) + "\n"
                             for i in range(500)))
    counted = Counted(chars, threading.Event(), stop_at=5)
    with pytest.raises(Cancelled):
        encode_pairs(load_pairs(pairs), counted, CHATML, 64, counted.cancel)
    assert counted.calls < 10


def test_reading_stops_once_cancelled(tmp_path: Path) -> None:
    data = write_fact_dataset(tmp_path / "d.jsonl", 50)
    cancel = threading.Event()
    cancel.set()
    for read in (read_objects, load_dataset, load_pairs, lambda p, c: check_data([p], "sft", c),
                 lambda p, c: check_data([p], "dpo", c), data_record_of):
        with pytest.raises(Cancelled):
            read(data, cancel)
    assert len(read_objects(data)[1]) == 50  # no flag: read as before


def data_record_of(path: Path, cancel: threading.Event) -> None:
    data_record([str(path)], cancel)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny") / "llama")


def small(tiny: Path, data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(base=str(tiny), data=[str(data)], output=str(out), rank=4, max_len=64, batch_size=2, max_steps=6,
                save_every=0, device="cpu", dtype="float32")
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_a_stop_while_the_data_is_encoded_ends_the_run_there(tiny: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cancel = threading.Event()
    counted: list[Counted] = []
    real = prepare.encoding

    def encoding(tokenizer):  # noqa: ANN001, ANN202
        template, tokenize = real(tokenizer)
        counted.append(Counted(tokenize, cancel, stop_at=5))
        return template, counted[-1]

    loaded: list[object] = []
    monkeypatch.setattr(prepare, "encoding", encoding)
    monkeypatch.setattr(loop, "lora_model", lambda *a, **k: loaded.append(a))
    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        train(small(tiny, write_fact_dataset(tmp_path / "d.jsonl", 500), out), cancel=cancel)
    assert counted[0].calls < 10  # not the 500 examples (about 1,000 calls)
    assert loaded == [] and not out.exists()  # the model never loaded, nothing written


@pytest.fixture(scope="module")
def stopped(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run's data and its output folder, cancelled after step 2 of 6: the checkpoint step-0000002."""
    root = tmp_path_factory.mktemp("stopped")
    data, out = write_fact_dataset(root / "d.jsonl", 8), root / "out"
    cancel = threading.Event()

    def emit(event: Event) -> None:
        if isinstance(event, Progress) and event.stage == "train" and event.done == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        train(small(tiny, data, out), emit=emit, cancel=cancel)
    return data, out


def copied(stopped: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """The stopped run's data and output copied under ``tmp_path``, its checkpoint recording the copy's path."""
    data = Path(shutil.copy(stopped[0], tmp_path / "d.jsonl"))
    out = Path(shutil.copytree(stopped[1], tmp_path / "out"))
    state = out / "checkpoints" / "step-0000002" / "state.json"
    meta = json.loads(state.read_text())
    meta["data"][0]["path"] = str(data.resolve())
    state.write_text(json.dumps(meta))
    return data, out


def test_a_checkpoint_records_its_data(stopped: tuple[Path, Path]) -> None:
    data, out = stopped
    meta = json.loads((out / "checkpoints" / "step-0000002" / "state.json").read_text())
    assert meta["data"] == data_record([str(data)])
    assert meta["data"][0]["path"] == str(data.resolve()) and meta["data"][0]["size"] == data.stat().st_size


def test_a_resume_with_no_step_left_is_refused(stopped: tuple[Path, Path], tiny: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    data, out = copied(stopped, tmp_path)
    checkpoint = out / "checkpoints" / "step-0000002"
    monkeypatch.setattr(loop, "lora_model", lambda *a, **k: pytest.fail("loaded the model"))
    for steps in (1, 2):  # step 2 of --max-steps 1 wrote an adapter of "steps: 2"
        with pytest.raises(TuillmError) as refused:
            train(small(tiny, data, out, max_steps=steps, resume=True))
        assert str(refused.value) == (f"{checkpoint}: the checkpoint is at step 2 and --max-steps is {steps}: no step "
                                      "is left to train; raise --max-steps above 2, or use another output folder")
    # By epochs: 8 examples in 4 micro-batches of 2 are 4 steps an epoch; half an epoch is the 2 steps done.
    with pytest.raises(TuillmError) as refused:
        train(small(tiny, data, out, max_steps=None, epochs=0.5, resume=True))
    assert str(refused.value) == (f"{checkpoint}: the checkpoint is at step 2 and --epochs 0.5 makes 2 steps: no step "
                                  "is left to train; raise --epochs or --max-steps, or use another output folder")
    assert not (out / "adapter_config.json").exists()


def test_a_resume_over_other_data_is_refused(stopped: tuple[Path, Path], tiny: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    data, out = copied(stopped, tmp_path)
    checkpoint = out / "checkpoints" / "step-0000002"
    size = data.stat().st_size
    monkeypatch.setattr(loop, "lora_model", lambda *a, **k: pytest.fail("loaded the model"))
    data.write_text(data.read_text() + data.read_text().splitlines()[0] + "\n")  # one example more
    with pytest.raises(TuillmError) as refused:
        train(small(tiny, data, out, resume=True))
    assert str(refused.value) == (f"{checkpoint}: the checkpoint was trained on other data ({data.resolve()} has "
                                  f"changed since ({size} bytes then, {data.stat().st_size} now)); resume with the "
                                  "same data, or use another output folder")
    other = write_fact_dataset(tmp_path / "other.jsonl", 8, seed=1)
    with pytest.raises(TuillmError, match=rf"trained on other data \(it was trained on {data.resolve()}, not "
                                          rf"{other.resolve()}\)"):
        train(small(tiny, other, out, resume=True))
    assert not (out / "adapter_config.json").exists()


def test_a_resume_over_other_data_is_refused_after_one_read(stopped: tuple[Path, Path], tiny: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # The front end's check, the digest for the data record and the encoding each read the file: now one read
    # checks it and hashes its bytes, and the resume is refused from that before anything loads.
    data, out = copied(stopped, tmp_path)
    opened: list[Path] = []
    real = jsonl._open

    def counting(path: Path):  # noqa: ANN202
        opened.append(Path(path))
        return real(path)

    monkeypatch.setattr(jsonl, "_open", counting)
    monkeypatch.setattr(train_base, "base_folder", lambda *a, **k: pytest.fail("looked at the base"))
    monkeypatch.setattr(loop, "lora_model", lambda *a, **k: pytest.fail("loaded the model"))
    data.write_text(data.read_text() + data.read_text().splitlines()[0] + "\n")  # one example more
    with pytest.raises(TuillmError, match=r"the checkpoint was trained on other data \(.* has changed since"):
        train(small(tiny, data, out, resume=True), datasets=check_data([str(data)], "sft"))
    assert opened == [data]


def test_the_same_data_moved_resumes(stopped: tuple[Path, Path], tiny: Path, tmp_path: Path) -> None:
    data, out = copied(stopped, tmp_path)
    moved = data.rename(tmp_path / "renamed.jsonl")
    result = train(small(tiny, moved, out, resume=True))
    assert [r["step"] for r in result.loss_log] == [1, 2, 3, 4, 5, 6]


def test_a_checkpoint_of_an_older_version_resumes_unchecked(stopped: tuple[Path, Path], tiny: Path,
                                                            tmp_path: Path) -> None:
    data, out = copied(stopped, tmp_path)
    state = out / "checkpoints" / "step-0000002" / "state.json"
    meta = json.loads(state.read_text())
    del meta["data"]  # as a checkpoint written before the data was recorded
    state.write_text(json.dumps(meta))
    data.write_text(data.read_text() + data.read_text().splitlines()[0] + "\n")
    assert train(small(tiny, data, out, resume=True)).steps == 6


def test_an_edited_data_record_is_a_damaged_checkpoint(stopped: tuple[Path, Path], tiny: Path,
                                                       tmp_path: Path) -> None:
    data, out = copied(stopped, tmp_path)
    checkpoint = out / "checkpoints" / "step-0000002"
    meta = json.loads((checkpoint / "state.json").read_text())
    meta["data"] = [{"path": 1}]
    (checkpoint / "state.json").write_text(json.dumps(meta))
    with pytest.raises(TuillmError) as refused:
        train(small(tiny, data, out, resume=True))
    assert str(refused.value) == (f"{checkpoint}: a damaged checkpoint (state.json: the data record is not a list of "
                                  "files (each a path, a size and a sha256)); delete it to resume from the one "
                                  "before, or train afresh with --force")


def test_data_difference_names_what_differs() -> None:
    def rec(path: str, sha: str, size: int = 10) -> dict:
        return {"path": path, "size": size, "sha256": sha}

    a, b = rec("/d/a.jsonl", "1"), rec("/d/b.jsonl", "2")
    assert data_difference([a, b], [rec("/e/moved.jsonl", "1"), rec("/e/b2.jsonl", "2")]) is None
    assert data_difference([a, b], [b, a]) == "the same data files in another order"
    assert data_difference([a, b], [a]) == "it was trained on 2 data files, and this run has 1"
    assert data_difference([a], [rec("/d/a.jsonl", "3")]) == "/d/a.jsonl has changed since (the same size, other " \
                                                             "contents)"
    assert data_difference([a], [rec("/d/\x1b[31m.jsonl", "3")]) == ("it was trained on /d/a.jsonl, not "
                                                                    "/d/\\x1b[31m.jsonl")
