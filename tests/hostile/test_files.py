"""Hostile files: GGUF metadata, HF checkpoints, safetensors headers, tokenizer and adapter files, the catalog and
the chat database. Every bad input is written by the test; each case asserts the exact one-line error (or the
documented fallback), the exit code, no traceback, nothing written and the input unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from tests.ggufs import write_tiny_gguf
from tests.hostile import gguf_bytes as gb
from tuillm.convert.errors import ConvertError
from tuillm.core.models import catalog
from tuillm.core.models.catalog import discover
from tuillm.core.settings import Config
from tuillm.tui.cli import main

GIB = 1024**3
REPO = Path(__file__).resolve().parents[2]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones included) with its content hash: inputs unchanged, nothing added."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str], folder: Path) -> str:
    """Run the CLI on a bad input: exit 1, one line on stderr, no traceback, the folder unchanged."""
    before = _snapshot(folder)
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 1, (out, err)
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("tuillm: ")
    assert _snapshot(folder) == before
    return err.removeprefix("tuillm: ").rstrip("\n")


# --- GGUF metadata -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real llama-shaped GGUF (2 layers, 64 wide, 4 heads, 2 KV heads, context 2048) the cases alter."""
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


def _u32(key: str, value: int) -> dict[str, bytes]:
    return {key: gb.kv(key, gb.U32, value)}


GGUF_CASES = [
    (_u32("llama.block_count", 4000), "metadata llama.block_count = 4000 is out of range (llama.cpp takes 1 to 512)"),
    (_u32("llama.block_count", 0), "metadata llama.block_count = 0 is out of range (llama.cpp takes 1 to 512)"),
    ({"llama.block_count": gb.kv("llama.block_count", gb.STRING, "thirty")},
     "metadata llama.block_count is a string, expected an integer"),
    (_u32("llama.context_length", 0),
     "metadata llama.context_length = 0 is out of range (llama.cpp takes 1 to 2147483647)"),
    (_u32("llama.context_length", 4_000_000_000),
     "metadata llama.context_length = 4000000000 is out of range (llama.cpp takes 1 to 2147483647)"),
    (_u32("llama.attention.head_count", 4_000_000_000),
     "metadata llama.attention.head_count = 4000000000 exceeds llama.embedding_length = 64"),
    (_u32("llama.attention.head_count_kv", 8),
     "metadata llama.attention.head_count_kv = 8 exceeds llama.attention.head_count = 4"),
    (_u32("llama.expert_count", 4), "metadata llama.expert_count = 4 needs a positive llama.expert_used_count = 0"),
    ({**_u32("llama.expert_count", 2000), **_u32("llama.expert_used_count", 2)},
     "metadata llama.expert_count = 2000 is out of range (llama.cpp takes 0 to 1024)"),
    (_u32("llama.nextn_predict_layers", 3),
     "metadata llama.nextn_predict_layers = 3 exceeds llama.block_count = 2"),
    ({"llama.rope.scaling.type": gb.kv("llama.rope.scaling.type", gb.STRING, "banana")},
     "metadata llama.rope.scaling.type = 'banana' is out of range (llama.cpp takes one of none, linear, yarn, "
     "longrope)"),
    ({"llama.attention.layer_norm_rms_epsilon": gb.kv("llama.attention.layer_norm_rms_epsilon", gb.F32,
                                                       float("nan"))},
     "metadata llama.attention.layer_norm_rms_epsilon = nan is out of range (llama.cpp takes a finite number >= 0)"),
    ({"llama.attention.layer_norm_rms_epsilon": gb.kv("llama.attention.layer_norm_rms_epsilon", gb.F32, -1.0)},
     "metadata llama.attention.layer_norm_rms_epsilon = -1 is out of range (llama.cpp takes a finite number >= 0)"),
    ({"llama.rope.freq_base": gb.kv("llama.rope.freq_base", gb.F32, 0.0)},
     "metadata llama.rope.freq_base = 0 is out of range (llama.cpp takes a finite number > 0)"),
    ({"llama.feed_forward_length": gb.kv("llama.feed_forward_length", gb.ARRAY, (gb.F32, [1.5, 2.5]))},
     "metadata llama.feed_forward_length is an array of float32, expected an integer or an array of integers"),
    ({"general.architecture": gb.kv("general.architecture", gb.U32, 7)},
     "metadata general.architecture is a uint32, expected a string"),
    (_u32("tokenizer.ggml.tokens", 5), "metadata tokenizer.ggml.tokens is a uint32, expected an array of strings"),
    (_u32("general.alignment", 3), "metadata general.alignment = 3 is not a power of two"),
    ({"x.deep": gb.gguf_string("x.deep") + struct.pack("<I", gb.ARRAY) + gb.nested_array(5000)},
     "metadata x.deep is an array of arrays (llama.cpp cannot read it)"),
    ({"general.name": gb.kv("general.name", gb.STRING, b"bad \xff\xfe name")},
     "metadata general.name is not valid UTF-8"),
    ({"zz.dup": gb.kv("general.name", gb.STRING, "twice")}, "metadata key general.name appears twice"),
    ({"x.type": gb.gguf_string("x.type") + struct.pack("<I", 77)}, "metadata x.type has unknown value type 77"),
]


@pytest.mark.parametrize(("changes", "expected"), GGUF_CASES, ids=[c[1][:60] for c in GGUF_CASES])
def test_bad_gguf_metadata_is_one_line(changes: dict[str, bytes], expected: str, tiny_gguf: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    bad = gb.replace_records(tiny_gguf, tmp_path / "bad.gguf", changes)
    assert _cli_error(["info", str(bad)], capsys, tmp_path) == f"{bad}: {expected}"


def test_key_that_is_not_utf8(tiny_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = gb.replace_records(tiny_gguf, tmp_path / "bad.gguf", {"zz": gb.kv(b"bad\xffkey", gb.U32, 1)})
    n_kv = struct.unpack_from("<Q", bad.read_bytes(), 16)[0]
    assert _cli_error(["info", str(bad)], capsys, tmp_path) == f"{bad}: metadata key #{n_kv} is not valid UTF-8"


def test_fifo_named_gguf_does_not_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    assert _cli_error(["info", str(fifo)], capsys, tmp_path) == (f"{fifo}: not a regular file or folder (a pipe, "
                                                                "socket or device)")


def test_llama_cpp_never_sees_an_aborting_file(demo_gguf: Path, tmp_path: Path) -> None:
    """The real demo with 4000 layers: llama.cpp would abort (GGML_ASSERT); `tuillm chat` refuses it in one line."""
    bad = gb.replace_records(demo_gguf, tmp_path / "demo-4000.gguf", _u32("llama.block_count", 4000))
    before = _snapshot(tmp_path)
    proc = subprocess.run([str(REPO / ".venv/bin/tuillm"), "chat", str(bad), "--prompt", "hi"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == (f"tuillm: {bad}: metadata llama.block_count = 4000 is out of range "
                           "(llama.cpp takes 1 to 512)\n")
    assert _snapshot(tmp_path) == before


def test_model_load_checks_the_file_first(demo_gguf: Path, tmp_path: Path) -> None:
    """LlamaModel.load itself refuses (a server or any other caller gets the same gate as the CLI)."""
    from tuillm.core.errors import ModelFileError
    from tuillm.core.llama.model import LlamaModel
    from tuillm.core.llama.options import LoadOptions

    bad = gb.replace_records(demo_gguf, tmp_path / "rope.gguf",
                             {"llama.rope.scaling.type": gb.kv("llama.rope.scaling.type", gb.STRING, "dynamic")})
    with pytest.raises(ModelFileError) as err:
        LlamaModel.load(bad, LoadOptions(n_ctx=256, check_memory=False))
    assert str(err.value) == (f"{bad}: metadata llama.rope.scaling.type = 'dynamic' is out of range (llama.cpp "
                              "takes one of none, linear, yarn, longrope)")


# --- HF checkpoints: config.json, safetensors headers, index, tokenizer, adapter_config -------------------------

CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8, "num_attention_heads": 2,
          "num_key_value_heads": 1, "num_hidden_layers": 1, "intermediate_size": 16, "vocab_size": 4,
          "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0}


def _safetensors(path: Path, header: dict | bytes, data: bytes) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _checkpoint(folder: Path, config: dict | bytes | None = None, header: dict | bytes | None = None,
                data: bytes = bytes(128)) -> Path:
    """A small HF folder: config.json and one safetensors file (the embedding, F32 4x8 = 128 bytes)."""
    folder.mkdir()
    cfg = CONFIG if config is None else config
    (folder / "config.json").write_bytes(cfg if isinstance(cfg, bytes) else json.dumps(cfg).encode())
    head = header if header is not None else {
        "model.embed_tokens.weight": {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 128]}}
    _safetensors(folder / "model.safetensors", head, data)
    return folder


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


CONFIG_CASES = [
    ({"hidden_size": 0}, "hidden_size = 0 is not an integer from 1 to 4294967295"),
    ({"num_attention_heads": -3}, "num_attention_heads = -3 is not an integer from 1 to 4294967295"),
    ({"num_hidden_layers": "abc"}, 'num_hidden_layers = "abc" is not an integer from 1 to 512'),
    ({"num_hidden_layers": 10**12}, "num_hidden_layers = 1000000000000 is not an integer from 1 to 512"),
    ({"intermediate_size": 1.5}, "intermediate_size = 1.5 is not an integer from 1 to 4294967295"),
    ({"max_position_embeddings": 2**40}, "max_position_embeddings = 1099511627776 is not an integer from 1 to "
                                         "2147483647"),
    ({"rope_theta": 0}, "rope_theta = 0 is not a finite number > 0"),
    ({"rms_norm_eps": -1e-5}, "rms_norm_eps = -1e-05 is not a finite number >= 0"),
    ({"rope_scaling": {"rope_type": "linear", "factor": "x"}}, 'rope_scaling.factor = "x" is not a finite number > 0'),
    ({"rope_scaling": [1, 2]}, "rope_scaling is not an object"),
    ({"architectures": "LlamaForCausalLM"}, 'architectures = "LlamaForCausalLM" is not a list of strings'),
    ({"num_attention_heads": 64}, "num_attention_heads = 64 exceeds hidden_size = 8"),
    ({"num_key_value_heads": 3, "num_attention_heads": 4}, "num_attention_heads = 4 is not a multiple of "
                                                            "num_key_value_heads = 3"),
    ({"text_config": {"hidden_size": -1}}, "text_config.hidden_size = -1 is not an integer from 1 to 4294967295"),
    ({"partial_rotary_factor": 1.5}, "partial_rotary_factor = 1.5 is not a fraction of the head (0 to 1)"),
]


@pytest.mark.parametrize(("change", "expected"), CONFIG_CASES, ids=[c[1][:50] for c in CONFIG_CASES])
@pytest.mark.parametrize("command", ["info", "convert"])
def test_bad_config_values(change: dict, expected: str, command: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = _checkpoint(tmp_path / "ckpt", {**CONFIG, **change})
    argv = ["info", str(folder)] if command == "info" else ["convert", str(folder), "-o", str(tmp_path / "o.gguf")]
    assert _cli_error(argv, capsys, tmp_path) == f"{folder / 'config.json'}: {expected}"


@pytest.mark.parametrize(("config", "expected"), [
    (_deep(100_000), "not valid JSON (nested too deeply)"),
    (b"[1, 2]", "not a JSON object"),
    (b"{\"a\": \xff}", "not valid JSON (UnicodeDecodeError)"),
    (b"{\"hidden_size\": " + b"9" * 5000 + b"}", "not valid JSON (a number too long to read)"),
])
def test_config_that_is_not_an_object(config: bytes, expected: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    folder = _checkpoint(tmp_path / "ckpt", config)
    argv = ["convert", str(folder), "-o", str(tmp_path / "o.gguf")]
    assert _cli_error(argv, capsys, tmp_path) == f"{folder / 'config.json'}: {expected}"


@pytest.mark.parametrize("name", ["config.json", "tokenizer_config.json", "tokenizer.json"])
def test_train_checks_the_json_transformers_would_read(name: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # Each was "unexpected error: RecursionError" from inside transformers (the data is fine).
    folder = _checkpoint(tmp_path / "ckpt")
    (folder / name).write_bytes(_deep(100_000))
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n')
    argv = ["train", str(folder), "--data", str(data), "-o", str(tmp_path / "out")]
    assert _cli_error(argv, capsys, tmp_path) == f"{folder / name}: not valid JSON (nested too deeply)"


@pytest.mark.parametrize("record", [_deep(100_000), b"[1]", b"\xff", b"{\"quant\": [1]}"])
def test_a_merge_reads_past_a_bad_training_record(record: bytes, tmp_path: Path) -> None:
    # training.json nested past the parser's depth was "unexpected error: RecursionError" from `tuillm merge`.
    from tuillm.core.train.checkpoints import TRAINING_FILE
    from tuillm.core.train.merge import qlora_base

    (tmp_path / TRAINING_FILE).write_bytes(record)
    assert qlora_base(tmp_path / "base", tmp_path) is None  # no record of a 4-bit base: the full-precision merge


E = "model.embed_tokens.weight"
HEADER_CASES = [
    ({E: {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 64]}},
     f"tensor '{E}' is F32 [4, 8] (128 bytes) but its data range holds 64 bytes"),
    ({E: {"dtype": "F32", "shape": [4, 8], "data_offsets": [128, 0]}},
     f"tensor '{E}' has its offsets out of order (128 > 0)"),
    ({E: {"dtype": "F32", "shape": [4, 8], "data_offsets": [64, 192]}},
     f"tensor '{E}' runs past the end of the file (truncated)"),
    ({E: {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]},
      "b": {"dtype": "F32", "shape": [4, 4], "data_offsets": [32, 96]}}, f"tensors '{E}' and 'b' overlap"),
    ({E: {"dtype": "Q9", "shape": [4, 8], "data_offsets": [0, 128]}}, f"tensor '{E}' has unknown dtype 'Q9'"),
    ({E: {"dtype": "F32", "shape": [4, -8], "data_offsets": [0, 128]}}, f"malformed entry for tensor '{E}'"),
    ({E: {"dtype": "F32", "shape": "4x8", "data_offsets": [0, 128]}}, f"malformed entry for tensor '{E}'"),
    ({E: [1, 2, 3]}, f"malformed entry for tensor '{E}'"),
    ({"__metadata__": [1], E: {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 128]}},
     "header __metadata__ is not an object of strings"),
    (b"[" * 100_000, "header is not valid JSON (nested too deeply)"),
    (b"[" + b"9" * 5000 + b"]", "header is not valid JSON (a number too long to read)"),
    (b"[1, 2]", "header is not a JSON object"),
]


@pytest.mark.parametrize(("header", "expected"), HEADER_CASES, ids=[c[1][:50] for c in HEADER_CASES])
def test_bad_safetensors_headers(header: dict | bytes, expected: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    folder = _checkpoint(tmp_path / "ckpt", header=header)
    weights = folder / "model.safetensors"
    assert _cli_error(["info", str(folder)], capsys, tmp_path) == f"{weights}: {expected}"
    argv = ["convert", str(folder), "-o", str(tmp_path / "o.gguf")]
    assert _cli_error(argv, capsys, tmp_path) == f"{folder}: model.safetensors: {expected}"


@pytest.mark.parametrize(("index", "expected"), [
    (b'{"weight_map": [1]}', "model.safetensors.index.json is not a valid index (no weight_map of tensor names to "
                             "files)"),
    (json.dumps({"weight_map": {E: "../../outside.safetensors"}}).encode(),
     "model.safetensors.index.json names a shard outside the folder: '../../outside.safetensors'"),
    (_deep(100_000), "model.safetensors.index.json is not valid JSON (nested too deeply)"),
])
def test_bad_index(index: bytes, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _checkpoint(tmp_path / "ckpt")
    (folder / "model.safetensors.index.json").write_bytes(index)
    assert _cli_error(["info", str(folder)], capsys, tmp_path) == f"{folder}: {expected}"
    argv = ["convert", str(folder), "-o", str(tmp_path / "o.gguf")]
    assert _cli_error(argv, capsys, tmp_path) == f"{folder}: {expected}"


@pytest.mark.parametrize(("tokenizer", "expected"), [
    ({"model": {"type": "BPE", "vocab": ["a", "b"]}}, "tokenizer.json: model.vocab is not an object of tokens to ids"),
    ({"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": [{"id": "x", "content": 1}]},
     "tokenizer.json: added_tokens is not a list of tokens with an id and a content"),
    ({"model": [1]}, "tokenizer.json is not a BPE tokenizer and there is no tokenizer.model"),
])
def test_bad_tokenizer_json(tokenizer: dict, expected: str, tmp_path: Path) -> None:
    from tuillm.convert.vocab import read_vocab

    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ConvertError) as err:
        read_vocab(tmp_path, 4)
    sep = "/" if expected.startswith("tokenizer.json:") else ": "
    assert str(err.value) == f"{tmp_path}{sep}{expected}"


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)  # no disk used: what a copy mistake or a hostile folder holds
    return path


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "tokenizer.model"])
def test_a_huge_tokenizer_file_is_refused_unread(name: str, tmp_path: Path) -> None:
    # Each was read whole: a 200 GB sparse tokenizer.json was a MemoryError (a crash report), and a chat template
    # that large was copied to a temporary folder by gguf's SpecialVocab until the disk filled.
    from tuillm.convert.safetensors_header import MAX_SMALL_FILE_BYTES
    from tuillm.convert.vocab import read_vocab

    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}))
    size = MAX_SMALL_FILE_BYTES + 1
    _sparse(tmp_path / name, size)
    with pytest.raises(ConvertError) as err:
        read_vocab(tmp_path, 4)
    assert str(err.value) == f"{tmp_path / name}: {size} bytes, larger than such a file ever is (512 MiB at most)"


@pytest.mark.parametrize("name", ["config.json", "model.safetensors.index.json"])
def test_a_huge_config_or_index_is_refused_unread(name: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from tuillm.convert.safetensors_header import MAX_SMALL_FILE_BYTES

    folder = _checkpoint(tmp_path / "ckpt")
    size = MAX_SMALL_FILE_BYTES + 1
    _sparse(folder / name, size)
    problem = f"{size} bytes, larger than such a file ever is (512 MiB at most)"
    expected = f"{folder / name}: {problem}" if name == "config.json" else f"{folder}: {name}: {problem}"
    assert _cli_error(["convert", str(folder), "-o", str(tmp_path / "o.gguf")], capsys, tmp_path) == expected


def test_deep_pre_tokenizer_is_refused_not_a_recursion(tmp_path: Path) -> None:
    from tuillm.convert.vocab import read_vocab

    pre = '{"type": "Sequence", "pretokenizers": [' * 5000 + '{"type": "ByteLevel"}' + "]}" * 5000
    (tmp_path / "tokenizer.json").write_text(
        '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": ' + pre + "}")
    with pytest.raises(ConvertError, match="tokenizer.json"):
        read_vocab(tmp_path, 4)


@pytest.mark.parametrize(("config", "expected"), [
    ({"r": "abc", "lora_alpha": 16}, 'r = "abc" is not a positive integer'),
    ({"r": 0, "lora_alpha": 16}, "r = 0 is not a positive integer"),
    ({"r": 8, "lora_alpha": "x"}, 'lora_alpha = "x" is not a finite number'),
    ({"r": 8, "use_rslora": "yes"}, 'use_rslora = "yes" is not true or false'),
    ({"r": 8, "target_modules": 5}, "target_modules = 5 is not a module name or a list of them"),
    ({"r": 8, "modules_to_save": ["lm_head", 1]}, 'modules_to_save = ["lm_head", 1] is not a module name or a list '
                                                  "of them"),
    ({"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}, "r = 8, but model.layers.0.self_attn.q_proj's LoRA "
                                                                "weights have rank 4"),
])
def test_bad_adapter_config(config: dict, expected: str, tmp_path: Path) -> None:
    # (merge read target_modules = 5 as "unexpected error: TypeError" inside peft)
    import numpy as np
    from safetensors.numpy import save_file

    from tuillm.convert.lora_to_gguf import open_adapter

    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    module = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file({f"{module}.lora_A.weight": np.zeros((4, 16), np.float32),
               f"{module}.lora_B.weight": np.zeros((16, 4), np.float32)}, tmp_path / "adapter_model.safetensors")
    with pytest.raises(ConvertError) as err:
        open_adapter(tmp_path)
    assert str(err.value) == f"{tmp_path / 'adapter_config.json'}: {expected}"


# --- the catalog and the chat database ---------------------------------------------------------------------------

def _config(*dirs: Path) -> Config:
    return Config(model_dirs=list(dirs), scan_hf_cache=True, scan_ollama=True, scan_lmstudio=False)


def test_bad_files_in_a_models_folder_are_listed_as_skipped(tiny_gguf: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "good.gguf").write_bytes(tiny_gguf.read_bytes())
    gb.replace_records(tiny_gguf, models / "layers.gguf", _u32("llama.block_count", 4000))
    (models / "text.gguf").write_text("hello")
    os.mkfifo(models / "pipe.gguf")
    result: list = []
    worker = threading.Thread(target=lambda: result.append(discover(config=_config(models), available=16 * GIB)),
                              daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the catalog blocked on a FIFO"
    assert result[0].find("good") is not None
    assert sorted((p.path, p.problem) for p in result[0].problems) == [
        (str(models / "layers.gguf"), "metadata llama.block_count = 4000 is out of range (llama.cpp takes 1 to 512)"),
        (str(models / "pipe.gguf"), "not a regular file or folder (a pipe, socket or device)"),
        (str(models / "text.gguf"), "not a GGUF file (bad magic)"),
    ]
    (tmp_path / "config.toml").write_text(f'[models]\ndirs = ["{models}"]\n')
    assert main(["--config", str(tmp_path / "config.toml"), "models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert "good" in [m["name"] for m in listed["models"]] and len(listed["problems"]) == 3


@pytest.mark.parametrize("entries", [
    [1, 2],
    "garbage",
    {"PATH": "not an entry"},
    {"PATH": {"stamp": "STAMP", "info": {"path": "PATH", "params": "lots"}}},
    {"PATH": {"stamp": "STAMP", "info": "INFO_WITH_STRING_LAYERS"}},
])
def test_malformed_catalog_cache_entries_are_read_again(entries: object, tiny_gguf: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    model = models / "m.gguf"
    model.write_bytes(tiny_gguf.read_bytes())
    good = catalog.read_info(model).to_json()
    text = json.dumps(entries).replace("\"STAMP\"", json.dumps(catalog.InfoCache.stamp(model)))
    text = text.replace("\"INFO_WITH_STRING_LAYERS\"", json.dumps({**good, "layer_bytes": ["x"]}))
    catalog.cache_file().parent.mkdir(parents=True, exist_ok=True)
    catalog.cache_file().write_text(json.dumps({"version": 1, "entries": json.loads(text.replace("PATH", str(model)))}))
    entry = discover(config=_config(models), available=16 * GIB).find("m")
    assert entry is not None and entry.info.to_json() == good


def test_hostile_hf_cache_refs_and_ollama_manifests_are_skipped(isolated_home: Path, tiny_gguf: Path) -> None:
    hub = isolated_home / ".cache/huggingface/hub"
    for name, ref in (("a--b", b"../../../../etc\n"), ("c--d", b"\xff\xfe\x00garbage")):
        snap = hub / f"models--{name}" / "snapshots" / "abc123"
        snap.mkdir(parents=True)
        (snap / "model.gguf").write_bytes(tiny_gguf.read_bytes())
        (hub / f"models--{name}" / "refs").mkdir()
        (hub / f"models--{name}" / "refs" / "main").write_bytes(ref)
    manifests = isolated_home / ".ollama/models/manifests/registry.ollama.ai/library"
    for model, body in (("deep", _deep(100_000)), ("layers", b'{"layers": 5}'),
                        ("escape", json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                                           "digest": "../../../etc/passwd"}]}).encode()),
                        ("nul", json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                                        "digest": "sha256:\u0000"}]}).encode())):
        (manifests / model).mkdir(parents=True)
        (manifests / model / "latest").write_bytes(body)
    result = discover(config=_config(), available=16 * GIB)
    # A ref that is not a commit falls back to the newest snapshot; the manifests name nothing usable.
    assert result.find("a/b/model.gguf") is not None and result.find("c/d/model.gguf") is not None
    assert not [e for e in result.entries if e.source == "ollama"]
    assert result.problems == []


def test_hostile_chat_rows_do_not_stop_the_store(tmp_path: Path) -> None:
    from tuillm.core.chat.store import ChatStore

    db = tmp_path / "chats.sqlite3"
    with ChatStore(db) as store:
        chat = store.create_chat("ok")
        store.add_message(chat.id, "user", "hello")
    raw = sqlite3.connect(db)
    raw.execute("UPDATE chats SET params = ?, title = ?, updated = 'soon'", ("[" * 100_000, b"\xff title"))
    raw.execute("INSERT INTO chats (title, params, created, updated) VALUES ('b', '{not json', 0, 0)")
    raw.execute("UPDATE messages SET stats = '[1, 2'")
    raw.commit()
    raw.close()
    with ChatStore(db) as store:
        chats = store.list_chats()
        assert sorted(c.title for c in chats) == ["b", "\ufffd title"]
        assert all(c.params == {} and c.sampling == type(c.sampling)() for c in chats)
        assert [(m.content, m.stats) for m in store.messages(chat.id)] == [("hello", None)]
