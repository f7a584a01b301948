"""Benchmark: HF -> GGUF (f16, q8_0) of the demo-derived checkpoint, tuillm vs a transformers + GGUFWriter baseline.

Each run happens in a fresh process; prints wall time, MB/s (of GGUF written) and peak RSS, and the ratios
(goal: >= 2x faster, <= 0.5x peak RSS). Run: .venv/bin/python tests/bench/convert.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import PEAK_RSS, run_child  # noqa: E402

TUILLM = PEAK_RSS + """
import json, sys, time
from pathlib import Path
t = time.perf_counter()
from tuillm.convert.hf_to_gguf import convert_hf
out = convert_hf(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "bytes": out.stat().st_size, "rss_mb": peak_rss_mb()}))
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


def run(code: str, folder: Path, out: Path, kind: str) -> dict:
    result = run_child(code, str(folder), str(out), kind)
    out.unlink()
    return result


def main() -> None:
    from tests.checkpoints import demo_hf_checkpoint

    folder = demo_hf_checkpoint()
    size = (folder / "model.safetensors").stat().st_size
    print(f"checkpoint: {folder.name} ({size / 1e6:.0f} MB safetensors, bf16)")
    print(f"{'':8}{'':10}{'wall s':>8}{'MB/s':>8}{'peak RSS MB':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("f16", "q8_0"):
            ours = run(TUILLM, folder, Path(tmp) / "a.gguf", kind)
            base = run(BASELINE, folder, Path(tmp) / "b.gguf", kind)
            for label, r in (("tuillm", ours), ("baseline", base)):
                print(f"{kind:8}{label:10}{r['wall']:8.2f}{r['bytes'] / 1e6 / r['wall']:8.0f}{r['rss_mb']:13.0f}")
            print(f"{kind:8}{'ratio':10}  speed x{base['wall'] / ours['wall']:.2f} (goal >= 2), "
                  f"RSS x{ours['rss_mb'] / base['rss_mb']:.2f} (goal <= 0.5)")


if __name__ == "__main__":
    main()
