"""Format work (no imports of tuillm.core or tuillm.tui here; progress goes out through plain callbacks).

The public API between these modules and for the core (nothing else crosses files):
- ``types``: the one registry of output types (``OUTPUT_TYPES``, ``check_type``); light, no gguf import.
- ``tensors``: their gguf enums, tensor sizes, the direct writer's per-tensor type, the rope permutation.
- ``hf_to_gguf.convert_hf``: HF checkpoint -> GGUF of a directly written type (f32/f16/bf16/q8_0);
  ``hf_to_gguf.hf_tensors``: the tensors it would write.
- ``quantize.quantize_gguf``: a GGUF -> any type through llama.cpp's quantizer; ``output_tensor_types`` predicts
  each tensor's type; ``intermediate_type`` the f16/bf16 file the quantizer starts from.
- ``lora_to_gguf``, ``checkpoint``, ``gguf_header``, ``safetensors_header``, ``vocab``, ``output``, ``progress``.
Writing several types from one source (one shared intermediate) is the core's job: ``convert_many`` in
tuillm.core.conversion.job. Bad input raises ``errors.ConvertError`` (one-line message).
"""
