"""Hostile LoRA adapters for `tuillm merge` and `tuillm export-lora`: an adapter_config.json whose values peft would
crash on or silently misread, weights that are not finite, a pickle instead of safetensors, an adapter of another
architecture with the same shapes. Each is one exact line and exit 1 from both commands, with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tests.checkpoints import tiny_random_checkpoint
from tests.convert.test_lora_to_gguf import make_adapter
from tuillm.tui.cli import main

WEIGHTS = "adapter_model.safetensors"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny llama base and a (random, non-zero) adapter of it: copied by each test before it is spoiled."""
    root = tmp_path_factory.mktemp("made")
    base = tiny_random_checkpoint("llama", root / "base")
    return base, make_adapter(base, root / "adapter")


@pytest.fixture
def adapter(made: tuple[Path, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(made[1], tmp_path / "A"))


def patch_config(adapter: Path, **changes: object) -> Path:
    path = adapter / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return path


def refusals(adapter: Path, base: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The one line each of export-lora and merge gives (exit 1, no traceback), nothing written beside the adapter."""
    lines = []
    for argv in (["export-lora", str(adapter), "--base", str(base), "-o", str(adapter.parent / "a.gguf")],
                 ["merge", str(base), str(adapter), "-o", str(adapter.parent / "m.gguf"), "--type", "f16"]):
        before = sorted(p.name for p in adapter.parent.iterdir())
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 1, err
        assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("tuillm: "), err
        assert sorted(p.name for p in adapter.parent.iterdir()) == before
        lines.append(err.removeprefix("tuillm: ").rstrip("\n"))
    return lines


NOT_LOADED = "is not supported (only true, false, gaussian, eva or orthogonal: the others change the base's weights " \
             "when the adapter loads)"
VARIANT = "a variant of LoRA that cannot be merged or exported"
CONFIG_CASES = [
    # export: "unexpected error: OverflowError: float too large to pack"; merge wrote a GGUF of inf weights
    ({"lora_alpha": 1e308}, "lora_alpha = 1e+308 is out of range (above 0, within float32)"),
    ({"lora_alpha": 0}, "lora_alpha = 0 is out of range (above 0, within float32)"),
    # merge: "unexpected error: TypeError" (or AttributeError, IndexError, re.error) from inside peft
    ({"lora_dropout": "x"}, 'lora_dropout = "x" is not a number from 0 to 1'),
    ({"rank_pattern": {"q_proj": "x"}}, 'rank_pattern = {"q_proj": "x"} is not an object of module names to numbers'),
    ({"rank_pattern": [1, 2]}, "rank_pattern = [1, 2] is not an object of module names to numbers"),
    ({"exclude_modules": 5}, "exclude_modules = 5 is not a module name or a list of them"),
    ({"target_modules": "(["}, 'target_modules = "([" is not a module name or a list of them'),
    ({"init_lora_weights": 5}, f"init_lora_weights = 5 {NOT_LOADED}"),
    ({"rank_pattern": {"q_proj": 10**30}}, "rank_pattern gives rank 1000000000000000000000000000000, which no LoRA "
                                           "weight of the adapter has"),
    ({"trainable_token_indices": [1, 999999999]}, f"trainable_token_indices = [1, 999999999]: {VARIANT}"),
    ({"layer_replication": [[0, 2], [0, 2]]}, f"layer_replication = [[0, 2], [0, 2]]: {VARIANT}"),
    # merge: PiSSA re-decomposed the base on load; export wrote an adapter for the untouched base
    ({"init_lora_weights": "pissa"}, f'init_lora_weights = "pissa" {NOT_LOADED}'),
    # export wrote these weights, which peft (a merge) would not load
    ({"target_modules": ["nope_proj"]}, 'target_modules = ["nope_proj"] does not name model.layers.0.mlp.down_proj, '
                                        "which the adapter's weights are for"),
]


@pytest.mark.parametrize(("changes", "expected"), CONFIG_CASES, ids=[next(iter(c)) for c, _ in CONFIG_CASES])
def test_bad_config_values(made: tuple[Path, Path], adapter: Path, capsys: pytest.CaptureFixture[str],
                           changes: dict, expected: str) -> None:
    path = patch_config(adapter, **changes)
    assert refusals(adapter, made[0], capsys) == [f"{path}: {expected}"] * 2


def test_a_hostile_peft_type_is_one_line(made: tuple[Path, Path], adapter: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    patch_config(adapter, peft_type="\x1b]0;x\x07\nIA3")  # was two lines: its newline was printed
    line = f'{adapter}: a "\\u001b]0;x\\u0007\\nIA3" adapter; only LoRA adapters are supported'
    assert refusals(adapter, made[0], capsys) == [line] * 2


def test_weights_that_are_not_finite(made: tuple[Path, Path], adapter: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    # Both commands wrote a GGUF that answers NaN.
    tensors = load_file(str(adapter / WEIGHTS))
    name = "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"
    tensors[name] = tensors[name].copy()
    tensors[name][3, 1] = np.inf
    save_file(tensors, str(adapter / WEIGHTS))
    line = f"{adapter}: {name} holds values that are not finite (inf or NaN): the adapter is broken (did its " \
           "training diverge?)"
    assert refusals(adapter, made[0], capsys) == [line] * 2


def test_a_pickle_is_named_and_never_loaded(made: tuple[Path, Path], adapter: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (adapter / WEIGHTS).unlink()
    (adapter / "adapter_model.bin").write_bytes(b"\x80\x04\x95 a pickle")
    line = f"{adapter}: no adapter_model.safetensors (adapter_model.bin is a pickle, never loaded: save the adapter " \
           "as safetensors)"
    assert refusals(adapter, made[0], capsys) == [line] * 2


def test_a_huge_config_is_not_read(made: tuple[Path, Path], adapter: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = adapter / "adapter_config.json"
    with path.open("r+b") as f:  # sparse: a 1 TiB one was "unexpected error: MemoryError"
        f.truncate(17 << 20)
    assert refusals(adapter, made[0], capsys) == [f"{path}: larger than 16 MiB (not an adapter config)"] * 2


def test_an_adapter_of_another_architecture_with_the_same_shapes(made: tuple[Path, Path], adapter: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # A Llama 3 8B adapter fits Mistral 7B layer for layer; both commands took it. training.json says what it was.
    (adapter / "training.json").write_text(json.dumps({"base_model_type": "qwen2", "rank": 4}))
    base = made[0]
    line = f"{adapter} was trained on a qwen2 model, and {base} is a llama model; give the base it was trained on"
    assert refusals(adapter, base, capsys) == [line] * 2


def test_a_merge_whose_weights_overflow(made: tuple[Path, Path], adapter: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # alpha within float32, but alpha / r x B @ A past it: the merged GGUF held inf weights.
    patch_config(adapter, lora_alpha=3e38)
    save_file({k: np.full_like(v, 3.0) for k, v in load_file(str(adapter / WEIGHTS)).items()}, str(adapter / WEIGHTS))
    rc = main(["merge", str(made[0]), str(adapter), "-o", str(adapter.parent / "m.gguf"), "--type", "f16", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and err == (f"tuillm: {adapter}: merged into {made[0]}, some weights are not finite (inf or NaN): "
                               "the adapter's scale (lora_alpha / r) is too large\n")
    assert sorted(p.name for p in adapter.parent.iterdir()) == ["A"]  # the merge folder beside the output is gone


def test_what_peft_still_refuses_is_one_line(made: tuple[Path, Path], adapter: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # The checks above catch every case found; a TypeError peft raises for one they miss is still one line (it was
    # "unexpected error: TypeError" with a crash log).
    import peft

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise TypeError("'<=' not supported between instances of 'str' and 'int'")

    monkeypatch.setattr(peft.PeftModel, "from_pretrained", refuse)
    rc = main(["merge", str(made[0]), str(adapter), "-o", str(adapter.parent / "m.gguf"), "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and err == (f"tuillm: {adapter}: peft cannot load it onto {made[0]} ('<=' not supported between "
                               "instances of 'str' and 'int')\n")
    assert sorted(p.name for p in adapter.parent.iterdir()) == ["A"]


def test_names_that_are_not_utf8(made: tuple[Path, Path], adapter: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """safetensors and tokenizers open UTF-8 paths only: a base, an adapter or a merged output named in other bytes
    crashed the merge half-way ("unexpected error: SafetensorError" / "UnicodeEncodeError"), and export-lora on the
    adapter's name (GGUF text)."""
    odd = adapter.rename(tmp_path / "\udcffA")  # the byte 0xff in a file name, as Python reads it
    why = "the name is not UTF-8, which the model libraries cannot open; rename it"
    assert refusals(odd, made[0], capsys) == [f"{tmp_path}/\\udcffA: {why}"] * 2
    base = Path(shutil.copytree(made[0], tmp_path / "\udcffbase"))
    out = tmp_path / "\udcffm.gguf"
    for argv, bad in ((["merge", str(base), str(odd.rename(adapter)), "-o", str(tmp_path / "m.gguf")], base),
                      (["merge", str(made[0]), str(adapter), "-o", str(out)], out)):
        assert main([*argv, "--type", "f16"]) == 1
        assert capsys.readouterr().err == f"tuillm: {tmp_path}/\\udcff{bad.name[1:]}: {why}\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["A", "\udcffbase"])
