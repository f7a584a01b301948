"""Format work (no imports of tuillm.core or tuillm.tui here; progress goes out through plain callbacks).

HF -> GGUF: ``tuillm.convert.quantize.convert(folder, out, type, progress=...)`` for every output type
(``OUTPUT_TYPES``); ``tuillm.convert.hf_to_gguf.convert_hf`` for the directly written f32/f16/bf16/q8_0;
``tuillm.convert.quantize.quantize_gguf`` re-quantizes a GGUF. Bad input raises ``errors.ConvertError``
(one-line message).
"""
