"""``tuillm convert`` / ``tuillm quantize`` end to end, and bad input: one line, exit 1, nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gguf
import pytest

from tests.checkpoints import tiny_random_checkpoint
from tuillm.tui.cli import main


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def tiny_sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny-sharded"), max_shard_size="4MB")
    assert (folder / "model.safetensors.index.json").is_file()
    return folder


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _convert_in_child(prelude: str, folder: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """``tuillm convert FOLDER -o OUT -q`` in a fresh interpreter, after running ``prelude`` there."""
    script = (
        f"import sys\n{prelude}"
        "from tuillm.tui.cli import main\n"
        f"sys.exit(main(['convert', {str(folder)!r}, '-o', {str(out)!r}, '-q']))\n"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def test_convert_f16_and_requantize(tiny_llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny.gguf"
    code, stdout, _ = _run_cli(["convert", str(tiny_llama), "-o", str(out), "--type", "f16"], capsys)
    assert code == 0 and stdout.strip() == str(out)
    assert gguf.GGUFReader(out).fields["general.file_type"].contents() == int(gguf.LlamaFileType.MOSTLY_F16)
    q = tmp_path / "tiny-q4_0.gguf"
    code, stdout, _ = _run_cli(["quantize", str(out), "-o", str(q), "--type", "q4_0", "-q"], capsys)
    assert code == 0 and stdout.strip() == str(q)
    assert gguf.GGUFReader(q).fields["general.file_type"].contents() == 2  # LLAMA_FTYPE_MOSTLY_Q4_0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-q4_0.gguf", "tiny.gguf"]


def test_sharded_checkpoint_converts(tiny_sharded: Path, tmp_path: Path, capsys) -> None:
    code, _, _ = _run_cli(["convert", str(tiny_sharded), "-o", str(tmp_path / "s.gguf"), "--type", "q8_0", "-q"],
                          capsys)
    assert code == 0
    names = {t.name for t in gguf.GGUFReader(tmp_path / "s.gguf").tensors}
    assert {"token_embd.weight", "output.weight", "blk.1.ffn_down.weight"} <= names


def _unsupported(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (folder / "config.json").write_text(json.dumps(config))


def _no_tokenizer(folder: Path) -> None:
    (folder / "tokenizer.json").unlink()


def _missing_shard(folder: Path) -> None:
    sorted(folder.glob("model-*.safetensors"))[-1].unlink()


def _truncated_shard(folder: Path) -> None:
    shard = sorted(folder.glob("model-*.safetensors"))[0]
    with shard.open("r+b") as f:
        f.truncate(shard.stat().st_size // 2)


def _index_names_missing_tensor(folder: Path) -> None:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = next(iter(index["weight_map"].values()))
    index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = shard
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def _more_layers_in_config(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3  # the weights have 2
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(("damage", "expected"), [
    (_more_layers_in_config, "ckpt: tensor blk.2.attn_norm.weight is missing (config.json's num_hidden_layers is 3; "
                             "the weights have 2 layers)"),
    (_unsupported, "unsupported architecture GPT2LMHeadModel; supported: llama, mistral"),
    (_no_tokenizer, "no tokenizer"),
    (_missing_shard, "is missing"),
    (_truncated_shard, "truncated"),
    (_index_names_missing_tensor, "model.layers.9.mlp.up_proj.weight"),
])
def test_bad_checkpoint(damage, expected: str, tiny_sharded: Path, tmp_path: Path, capsys) -> None:
    folder = _copy(tiny_sharded, tmp_path / "ckpt")
    damage(folder)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, stdout, stderr = _run_cli(["convert", str(folder), "-o", str(out_dir / "x.gguf"), "-q"], capsys)
    assert code == 1
    assert stderr.startswith("tuillm: ") and stderr.count("\n") == 1 and expected in stderr, stderr
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("out_type", ["q8_0", "q4_k_m"])
@pytest.mark.parametrize(("removed", "expected"), [
    # Layer 0 shows what each layer holds: a later layer short of one would load in no llama.cpp.
    ("model.layers.1.mlp.up_proj.weight", "tensor blk.1.ffn_up.weight is missing (config.json's num_hidden_layers "
                                          "is 2; the weights have 2 layers)"),
    ("model.norm.weight", "tensor output_norm.weight is missing (the final norm, model.norm.weight)"),
])
def test_a_missing_tensor_is_refused(removed: str, expected: str, out_type: str, tiny_llama: Path, tmp_path: Path,
                                     capsys) -> None:
    """Refused before anything is written, whichever writer (ours, or llama.cpp's quantizer) would write it."""
    from safetensors.numpy import load_file, save_file

    folder = _copy(tiny_llama, tmp_path / "ckpt")
    weights = load_file(folder / "model.safetensors")
    del weights[removed]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, stderr = _run_cli(["convert", str(folder), "-o", str(out_dir / "x.gguf"), "--type", out_type, "-q"],
                               capsys)
    assert code == 1
    assert stderr == f"tuillm: {folder}: {expected}\n"
    assert list(out_dir.iterdir()) == []


def test_output_folder_not_usable(tiny_llama: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, stderr = _run_cli(["convert", str(tiny_llama), "-o", str(blocker / "x.gguf"), "-q"], capsys)
    assert code == 1 and stderr.count("\n") == 1 and "not a folder" in stderr, stderr
    code, _, stderr = _run_cli(["convert", str(tiny_llama), "-o", str(tmp_path / "missing" / "x.gguf"), "-q"],
                               capsys)
    assert code == 1 and stderr.count("\n") == 1 and "no such folder" in stderr, stderr


def test_quantize_to_a_missing_folder_says_so_before_any_progress(tmp_path: Path, capsys) -> None:
    from tuillm.core.paths import demo_model_path

    code, out, stderr = _run_cli(["quantize", str(demo_model_path()), "-o", str(tmp_path / "missing" / "x.gguf"),
                                  "--type", "q8_0"], capsys)
    # One line and nothing before it: no "0%" progress line, no re-quantizing warning for a job that cannot run.
    assert (code, out, stderr) == (1, "", f"tuillm: {tmp_path / 'missing'}: no such folder\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_output_folder_read_only(tiny_llama: Path, tmp_path: Path, capsys) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, _, stderr = _run_cli(["convert", str(tiny_llama), "-o", str(ro / "x.gguf"), "-q"], capsys)
    finally:
        ro.chmod(0o755)
    assert code == 1 and "not writable" in stderr
    assert list(ro.iterdir()) == []


def test_failed_write_leaves_nothing(tiny_llama: Path, tmp_path: Path) -> None:
    """A write that fails half way (here: a file-size limit, standing in for a full disk) leaves no file."""
    proc = _convert_in_child(
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))\n",
        tiny_llama, tmp_path / "x.gguf")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("tuillm: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_quantize_bad_input(tmp_path: Path, capsys) -> None:
    not_gguf = tmp_path / "x.gguf"
    not_gguf.write_bytes(b"nope" * 10)
    code, _, stderr = _run_cli(["quantize", str(not_gguf), "-o", str(tmp_path / "y.gguf"), "--type", "q4_k_m"],
                               capsys)
    assert code == 1 and "not a GGUF file" in stderr and stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.gguf"]


def test_convert_does_not_import_torch(tiny_llama: Path, tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from tuillm.tui.cli import main\n"
        f"code = main(['convert', {str(tiny_llama)!r}, '-o', {str(tmp_path / 'x.gguf')!r}, '-q'])\n"
        "assert code == 0\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-2:] == ["False", "False"]


def test_ctrl_c_leaves_nothing(tiny_llama: Path, tmp_path: Path) -> None:
    """SIGINT half way through (raised by the process itself at the 3rd tensor, like a user's Ctrl-C)."""
    proc = _convert_in_child(
        "import os, signal\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"  # as a terminal's shell gives it (a script's
        # background job would pass on SIGINT ignored, and Python then leaves it so)
        "import tuillm.core.conversion.job as job\n"
        "original = job._progress_callback\n"
        "def with_interrupt(*args):\n"
        "    inner = original(*args)\n"
        "    def on_progress(p):\n"
        "        inner(p)\n"
        "        if p.tensors_done == 3:\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "    return on_progress\n"
        "job._progress_callback = with_interrupt\n",
        tiny_llama, tmp_path / "x.gguf")
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "tuillm: interrupted\n"
    assert list(tmp_path.iterdir()) == []


def test_requantize_quantized_gguf_warns(demo_gguf: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo-q5_0.gguf"
    code, stdout, stderr = _run_cli(["quantize", str(demo_gguf), "-o", str(out), "--type", "q5_0"], capsys)
    assert code == 0 and stdout.strip() == str(out)
    assert "already quantized" in stderr
    assert gguf.GGUFReader(out).fields["general.file_type"].contents() == 8  # LLAMA_FTYPE_MOSTLY_Q5_0
