"""Small GGUF files written in tests with gguf's own writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tiny_gguf(path: Path, *, arch: str = "llama", n_layers: int = 2, n_embd: int = 64, n_head: int = 4,
                    n_head_kv: int = 2, vocab: int = 128, ctx: int = 2048, name: str = "tiny",
                    template: str | None = "{{ messages[0]['content'] }}", general_type: str | None = None) -> Path:
    """A structurally valid llama-shaped GGUF with random f32/f16 weights (not meant to produce good text)."""
    import gguf

    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    if general_type:
        w.add_type(general_type)
    w.add_context_length(ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(n_embd * 2)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(vocab)])
    if template:
        w.add_chat_template(template)
    head_dim = n_embd // n_head
    w.add_tensor("token_embd.weight", rng.standard_normal((vocab, n_embd), dtype=np.float32).astype(np.float16))
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    for i in range(n_layers):
        for t, shape in (("attn_q", (n_embd, n_embd)), ("attn_k", (n_head_kv * head_dim, n_embd)),
                         ("attn_v", (n_head_kv * head_dim, n_embd)), ("attn_output", (n_embd, n_embd)),
                         ("ffn_gate", (n_embd * 2, n_embd)), ("ffn_up", (n_embd * 2, n_embd)),
                         ("ffn_down", (n_embd, n_embd * 2))):
            w.add_tensor(f"blk.{i}.{t}.weight", rng.standard_normal(shape, dtype=np.float32).astype(np.float16))
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
