"""Benchmark: HF -> GGUF (f16, q8_0) of the demo-derived checkpoint against two references measured in the same run.

- baseline: the straightforward way (transformers loads the model, every tensor through gguf-py's GGUFWriter);
- copy: the physical floor, a plain copy of as many bytes as the GGUF has, read from the checkpoint and written
  beside the output on the same disk (read + write in 8 MiB blocks; no fsync, as the converter does none).

Every run is a fresh process; the three are interleaved round after round (after one warm-up round, so the
checkpoint is in the page cache for all of them) and the medians compared: wall time (from the child's first
line, its imports included), MB/s of GGUF written, peak RSS. tuillm's runs also report their phases.
Goals: f16 >= 3x faster than the baseline, within 3x of the copy, peak RSS not above the previous design's
(ordered appends from a pool of encoders: ~220 MB for f16 with 2 threads; ~135 MB now).
Run: .venv/bin/python tests/bench/convert.py [--rounds N] [--types f16,q8_0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import PEAK_RSS, run_child  # noqa: E402

# Phases are timed by wrapping the converter's steps where convert_hf looks them up (its module namespace).
TUILLM = PEAK_RSS + """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from tuillm.convert import hf_to_gguf
phases = {"import": time.perf_counter() - t0}
def timed(label, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[label] = phases.get(label, 0.0) + time.perf_counter() - t
    return wrapper
for label, attr in (("headers", "open_checkpoint"), ("tokenizer", "read_vocab"), ("metadata", "add_vocab"),
                    ("pack", "header_bytes"), ("tensors", "write_gguf")):
    setattr(hf_to_gguf, attr, timed(label, getattr(hf_to_gguf, attr)))
out = hf_to_gguf.convert_hf(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "bytes": out.stat().st_size, "rss_mb": peak_rss_mb(), "phases": phases}))
"""

# The straightforward way: transformers loads the model, every tensor goes through GGUFWriter.add_tensor.
BASELINE = PEAK_RSS + """
import json, sys, time
from pathlib import Path
t = time.perf_counter()
import gguf, numpy as np, torch
from transformers import AutoModelForCausalLM
folder, out, kind = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
model = AutoModelForCausalLM.from_pretrained(folder)
cfg = model.config
names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
writer = gguf.GGUFWriter(out, "llama")
def permute(w, n):
    return w.reshape(n, 2, w.shape[0] // n // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
for name, tensor in model.state_dict().items():
    if name == "lm_head.weight" and cfg.tie_word_embeddings:
        continue
    data = tensor.float().numpy()
    if name.endswith("q_proj.weight"):
        data = permute(data, cfg.num_attention_heads)
    elif name.endswith("k_proj.weight"):
        data = permute(data, cfg.num_key_value_heads)
    new = names.get_name(name, try_suffixes=(".weight", ".bias"))
    if data.ndim < 2:
        writer.add_tensor(new, data.astype(np.float32))
    elif kind == "f16":
        writer.add_tensor(new, data.astype(np.float16))
    else:
        q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(new, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()
wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "bytes": out.stat().st_size, "rss_mb": peak_rss_mb()}))
"""

# The physical reference: read the checkpoint's bytes and write argv[3] bytes of them (from its start again if
# the GGUF is the larger) to a new file, in 8 MiB blocks; the converter's pieces are about that size too.
COPY = PEAK_RSS + """
import json, os, sys, time
t = time.perf_counter()
src, dst, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
block = bytearray(8 << 20)
view = memoryview(block)
written = 0
with open(dst, "wb", buffering=0) as out:
    while written < size:
        with open(src, "rb", buffering=0) as f:
            while written < size:
                n = f.readinto(view[:min(len(block), size - written)])
                if not n:
                    break
                out.write(view[:n])
                written += n
wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "bytes": os.path.getsize(dst), "rss_mb": peak_rss_mb()}))
"""


def _run(code: str, out: Path, *args: str) -> dict:
    result = run_child(code, *args)
    out.unlink()
    return result


def measure(folder: Path, tmp: Path, kind: str, rounds: int) -> dict[str, list[dict]]:
    """``rounds`` interleaved runs of each (after one warm-up round whose results are dropped)."""
    runs: dict[str, list[dict]] = {"tuillm": [], "baseline": [], "copy": []}
    for i in range(rounds + 1):
        ours = _run(TUILLM, tmp / "a.gguf", str(folder), str(tmp / "a.gguf"), kind)
        base = _run(BASELINE, tmp / "b.gguf", str(folder), str(tmp / "b.gguf"), kind)
        copy = _run(COPY, tmp / "c.bin", str(folder / "model.safetensors"), str(tmp / "c.bin"), str(ours["bytes"]))
        if i:
            for label, r in (("tuillm", ours), ("baseline", base), ("copy", copy)):
                runs[label].append(r)
    return runs


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(kind: str, runs: dict[str, list[dict]]) -> None:
    for label, rs in runs.items():
        wall = _median(rs, "wall")
        each = " ".join(f"{r['wall']:.2f}" for r in rs)
        print(f"{kind:6}{label:10}{wall:8.2f}{rs[0]['bytes'] / 1e6 / wall:8.0f}{_median(rs, 'rss_mb'):13.0f}"
              f"   runs: {each}")
    phases = runs["tuillm"][0]["phases"]
    shown = "  ".join(f"{name} {statistics.median(r['phases'][name] for r in runs['tuillm']):.2f}"
                      for name in phases)
    print(f"{kind:6}{'phases s':10}  {shown}")
    ours, base, copy = (_median(runs[k], "wall") for k in ("tuillm", "baseline", "copy"))
    data = statistics.median(r["phases"]["tensors"] for r in runs["tuillm"])
    rss = _median(runs["tuillm"], "rss_mb") / _median(runs["baseline"], "rss_mb")
    print(f"{kind:6}{'ratios':10}  baseline/tuillm x{base / ours:.2f} (goal >= 3), tuillm/copy x{ours / copy:.2f} "
          f"(goal <= 3; its tensor data alone x{data / copy:.2f}), RSS tuillm/baseline x{rss:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per type (default 5)")
    parser.add_argument("--types", default="f16,q8_0", help="output types, comma-separated (default f16,q8_0)")
    args = parser.parse_args()
    from tests.checkpoints import demo_hf_checkpoint

    folder = demo_hf_checkpoint()
    size = (folder / "model.safetensors").stat().st_size
    print(f"checkpoint: {folder.name} ({size / 1e6:.0f} MB safetensors, bf16); {args.rounds} rounds, medians")
    print(f"{'':6}{'':10}{'wall s':>8}{'MB/s':>8}{'peak RSS MB':>13}")
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:  # the checkpoint's disk: same for all three
        for kind in args.types.split(","):
            report(kind, measure(folder, Path(tmp), kind, args.rounds))


if __name__ == "__main__":
    main()
