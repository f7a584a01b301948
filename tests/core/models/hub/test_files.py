"""Quant names from file names, split grouping, checkpoint selection and file-name checks: names come from the Hub,
so every function here takes any text without raising (hypothesis)."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from tuillm.core.models.hub.api import check_repo, safe_name
from tuillm.core.models.hub.files import RemoteFile, checkpoint_files, group_quants, quant_of


def test_quant_names_as_llama_cpp_reads_them() -> None:
    cases = {
        "Qwen2.5-7B-Instruct-Q4_K_M.gguf": "Q4_K_M",
        "model.q8_0.gguf": "Q8_0",
        "Llama-3-8B-IQ4_XS.gguf": "IQ4_XS",
        "phi-3-mini-fp16.gguf": "F16",
        "gemma-2-9b-it-BF16-00001-of-00002.gguf": "BF16",
        "sub/dir/x-Q2_K_L.gguf": "Q2_K_L",
        "gpt-oss-20b-MXFP4.gguf": "MXFP4",
        "plain.gguf": None,
    }
    assert {name: quant_of(name) for name in cases} == cases


def test_splits_grouped_incomplete_ones_dropped_mmproj_apart() -> None:
    files = tuple(RemoteFile(n, s) for n, s in [
        ("m-Q4_K_M-00002-of-00002.gguf", 5), ("m-Q4_K_M-00001-of-00002.gguf", 7), ("m-Q8_0-00001-of-00003.gguf", 9),
        ("m-Q2_K.gguf", 3), ("mmproj-m-f16.gguf", 1), ("README.md", 1)])
    quants, mmproj = group_quants(files)
    assert [(q.quant, [f.name for f in q.files], q.size) for q in quants] == [
        ("Q2_K", ["m-Q2_K.gguf"], 3),
        ("Q4_K_M", ["m-Q4_K_M-00001-of-00002.gguf", "m-Q4_K_M-00002-of-00002.gguf"], 12)]
    assert [m.name for m in mmproj] == ["mmproj-m-f16.gguf"]


def test_checkpoint_files_never_take_pickles() -> None:
    names = ["config.json", "tokenizer.json", "model-00001-of-00002.safetensors", "model.safetensors.index.json",
             "pytorch_model.bin", "training_args.bin", "optimizer.pt", "x.pkl", "sub/config.json", "README.md"]
    kept = [f.name for f in checkpoint_files(tuple(RemoteFile(n, 1) for n in names))]
    assert kept == ["config.json", "tokenizer.json", "model-00001-of-00002.safetensors",
                    "model.safetensors.index.json"]


def test_names_that_leave_the_folder_are_refused() -> None:
    for bad in ("../x.gguf", "a/../../x", "/etc/passwd", "a//b", "a\\b", "x\x1b[2J.gguf", "", "./x"):
        assert not safe_name(bad), bad
    assert safe_name("sub/dir/model-Q4_K_M.gguf")


def test_names_that_cannot_be_shown_or_stored_are_refused() -> None:
    # A C1 CSI, a right-to-left override that shows the name backwards, a zero-width space, a part longer than a
    # file system's 255 bytes (each would be fetched to fail at the open, or shown as another name).
    for bad in ("x\x9b2J-Q4_K_M.gguf", "m-\u202eFUGG.0_8Q", "Q4\u200b_K_M.gguf", "x" * 250 + "-Q4_K_M.gguf",
                "sub/" + "é" * 130 + ".gguf"):
        assert not safe_name(bad), bad
    assert safe_name("d" * 255 + "/" + "é" * 120 + "-Q4_K_M.gguf")


def test_a_split_is_whole_only_with_each_part_once() -> None:
    def parts(*names: str) -> list[list[str]]:
        return [[f.name for f in q.files] for q in group_quants(tuple(RemoteFile(n, 1) for n in names))[0]]

    assert parts("m-00001-of-00002.gguf", "m-00001-of-00002.gguf") == []  # part 1 twice, part 2 missing
    assert parts("m-00001-of-00002.gguf", "m-00003-of-00002.gguf") == []  # part 3 of 2
    assert parts("m-00001-of-00002.gguf", "m-00002-of-00003.gguf") == []  # two counts
    assert parts("m-00000-of-00000.gguf") == []
    assert parts("m-00002-of-00002.gguf", "m-00001-of-00002.gguf") == [["m-00001-of-00002.gguf",
                                                                        "m-00002-of-00002.gguf"]]


@given(st.text(max_size=300))
def test_any_name_is_read_without_raising(name: str) -> None:
    q = quant_of(name)
    assert q is None or q == q.upper()
    group_quants((RemoteFile(name, 1),))
    checkpoint_files((RemoteFile(name, 1),))
    if safe_name(name):
        assert ".." not in name.split("/") and not name.startswith("/")


@example("a/b\n")
@given(st.text(max_size=200))
def test_any_repo_text_is_checked_without_surprises(text: str) -> None:
    try:
        repo = check_repo(text)
    except Exception as exc:  # noqa: BLE001 - only the one-line error is allowed
        assert type(exc).__name__ == "TuillmError"
    else:
        owner, name = repo.split("/")
        assert owner and name and ".." not in repo and repo.isprintable()
