"""The chat engine: one ``llama_cpp.Llama`` owned by one worker thread, streaming replies as events.

A ``Llama`` is not thread-safe, so every call that touches it runs on the session's single worker thread; the
public methods only submit work and return ``Future``s. Front ends pass an ``emit`` callback (called on the worker
thread: a Textual pane forwards with ``app.call_from_thread``) and ask a running reply to stop with ``stop()``,
which is honoured before the next token is emitted.

Prefix reuse: each turn renders the whole conversation and hands its tokens to ``Llama.generate``, which keeps the
part of its KV cache that matches the new prompt's prefix; only the new tokens are evaluated.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import io
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tuillm.core.chat.events import (
    ChatEmit,
    ContextTrimmed,
    ModelLoaded,
    ModelUnloaded,
    ReplyDone,
    ReplyFailed,
    ReplyStarted,
    ReplyStats,
    Token,
)
from tuillm.core.chat.template import ChatTemplate, load_template
from tuillm.core.errors import ModelFileError, TuillmError
from tuillm.core.events import Log
from tuillm.core.llama.loader import LOG_LINES, install_log_capture, last_llama_error, new_llama
from tuillm.core.llama.options import KV_TYPES, LoadOptions, Sampling
from tuillm.core.models.memory import default_gpu_layers

Message = Mapping[str, str]


class _StopFlag(threading.Event):
    """A reply's stop request, also kept as a C string (empty, or "\\x01" once set) that llama.cpp can poll."""

    def __init__(self) -> None:
        super().__init__()
        self.c_flag = ctypes.create_string_buffer(2)

    def set(self) -> None:
        self.c_flag[0] = b"\x01"
        super().set()


_native_abort_fn: Any = None


def _native_abort() -> Any:
    """An abort callback that needs no GIL: libc's ``strlen`` on the stop flag's C string (0 or 1, read as bool).

    llama.cpp polls the callback after every graph node. A Python callback must take the GIL each time, and with
    a busy event loop on the main thread (the TUI) that made a prompt evaluate about seven times slower. strlen has
    the callback's shape (one pointer in, an integer out, low byte read as the bool). None where libc is not
    found: the Python callback is used.
    """
    global _native_abort_fn
    if _native_abort_fn is None:
        import llama_cpp

        try:
            strlen = ctypes.CDLL(None).strlen
        except (OSError, AttributeError, TypeError):
            _native_abort_fn = False
        else:
            _native_abort_fn = llama_cpp.ggml_abort_callback(ctypes.cast(strlen, ctypes.c_void_p).value)
    return _native_abort_fn or None


_REDIRECT_LOCK = threading.Lock()


def _check_memory(info: Any, opts: LoadOptions, n_gpu_layers: int) -> None:
    # The same check the Models pane's fit marker and the Chat pane make before loading.
    from tuillm.core.models.memory import load_refusal

    refusal = load_refusal(info, replace(opts, n_gpu_layers=n_gpu_layers))
    if refusal is not None:
        raise TuillmError(refusal)


def _fit_messages(messages: list[dict[str, str]], count: Any, n_ctx: int, max_tokens: int,
                  ) -> tuple[list[dict[str, str]], list[int], int]:
    """Drop the oldest turns (never a leading system prompt) until prompt + reply budget fit in ``n_ctx``.

    ``count(messages) -> tokens``. Returns the kept messages, their prompt tokens and how many were dropped.
    """
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    rest = messages[len(system):]
    dropped = 0
    while True:
        tokens = count(system + rest)
        if len(tokens) + max_tokens <= n_ctx or len(rest) <= 1:
            return system + rest, tokens, dropped
        # A turn is a user message and the replies that follow it, up to the next user message.
        cut = 1
        while cut < len(rest) - 1 and rest[cut]["role"] != "user":
            cut += 1
        rest = rest[cut:]
        dropped += cut


@dataclass
class _Loaded:
    llm: Any
    path: str
    template: ChatTemplate
    n_ctx: int
    n_gpu_layers: int
    add_bos: bool
    bos_text: str
    lora_path: str | None = None
    options: LoadOptions = field(default_factory=LoadOptions)


class ChatSession:
    """One model, one worker thread. Methods are safe to call from any thread."""

    def __init__(self, emit: ChatEmit | None = None) -> None:
        self._emit: ChatEmit = emit or (lambda _event: None)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuillm-chat")
        self._loaded: _Loaded | None = None
        self._stop_lock = threading.Lock()
        self._stop_events: set[threading.Event] = set()  # one per reply not finished yet
        self._closed = False

    # --- state readable from any thread (plain attribute reads) ---
    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def model_path(self) -> str | None:
        return self._loaded.path if self._loaded else None

    @property
    def n_ctx(self) -> int:
        return self._loaded.n_ctx if self._loaded else 0

    @property
    def context_used(self) -> int:
        """Tokens in the KV cache now (prompt + reply of the last turn)."""
        return int(self._loaded.llm.n_tokens) if self._loaded else 0

    @property
    def options(self) -> LoadOptions | None:
        """The options the model was loaded with (flash_attn as actually used)."""
        return self._loaded.options if self._loaded else None

    @property
    def template(self) -> ChatTemplate | None:
        return self._loaded.template if self._loaded else None

    # --- work, run on the worker thread ---
    def load(self, path: str | Path, options: LoadOptions | None = None) -> Future[ModelLoaded]:
        return self._worker.submit(self._load, Path(path).expanduser(), options or LoadOptions())

    def reply(self, messages: Sequence[Message], sampling: Sampling | None = None,
              listener: ChatEmit | None = None) -> Future[ReplyDone]:
        """Stream the assistant's answer to ``messages`` (the whole conversation, system prompt first).

        The reply's events go to the session's emit, then to ``listener`` if given (e.g. a store saver).
        """
        stop = _StopFlag()
        with self._stop_lock:
            self._stop_events.add(stop)
        emit = self._emit
        if listener is not None:
            def emit(event: Any) -> None:
                self._emit(event)
                listener(event)
        return self._worker.submit(self._reply, [dict(m) for m in messages], sampling or Sampling(), stop, emit)

    def stop(self) -> None:
        """Ask the running (and any queued) reply to end; no token is emitted after the next one is decoded."""
        with self._stop_lock:
            for event in self._stop_events:
                event.set()

    def set_template(self, source: str | None) -> Future[ChatTemplate]:
        """Replace the chat template (None: back to the GGUF's)."""
        return self._worker.submit(self._set_template, source)

    def count_tokens(self, messages: Sequence[Message]) -> Future[int]:
        return self._worker.submit(lambda: len(self._prompt_tokens([dict(m) for m in messages])))

    def reset_cache(self) -> Future[None]:
        """Forget the evaluated prompt: the next reply evaluates its whole prompt again."""
        return self._worker.submit(lambda: self._require().llm.reset())

    def unload(self) -> Future[None]:
        return self._worker.submit(self._unload)

    def close(self) -> None:
        """Stop, unload and end the worker thread (waits for it). Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        self._worker.submit(self._unload)
        self._worker.shutdown(wait=True)

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- worker-thread implementations ---
    def _load(self, path: Path, opts: LoadOptions) -> ModelLoaded:
        from tuillm.core.models.metadata import read_info

        if opts.kv_type not in KV_TYPES:
            raise TuillmError(f"KV cache type must be one of {', '.join(KV_TYPES)}, not {opts.kv_type!r}")
        if opts.n_ctx < 16:
            raise TuillmError(f"context size {opts.n_ctx} is too small (at least 16 tokens)")
        info = read_info(path)  # missing file, bad magic, truncated header: a ModelFileError naming the path
        if info.format != "gguf":
            raise ModelFileError(path, "chat needs a GGUF file (convert the checkpoint first)")
        if info.kind == "adapter":
            raise ModelFileError(path, "is a LoRA adapter, not a model (pass it with --lora)")
        lora = Path(opts.lora_path).expanduser() if opts.lora_path else None
        if lora is not None:
            lora_info = read_info(lora)
            if lora_info.format != "gguf" or lora_info.kind != "adapter":
                raise ModelFileError(lora, "not a LoRA adapter GGUF (export one with `tuillm export-lora`)")
        n_gpu_layers = (default_gpu_layers(info, opts.n_ctx, opts.kv_type) if opts.n_gpu_layers is None
                        else opts.n_gpu_layers)
        if opts.check_memory:
            _check_memory(info, opts, n_gpu_layers)
        if info.context_length and opts.n_ctx > info.context_length:
            self._emit(Log(f"context {opts.n_ctx} is longer than the model was trained for "
                           f"({info.context_length}); quality may drop", "warning"))
        flash_attn = opts.flash_attn
        if opts.kv_type != "f16" and not flash_attn:
            # llama.cpp quantizes the V cache only with flash attention.
            flash_attn = True
            self._emit(Log(f"KV cache {opts.kv_type} needs flash attention: turned it on"))

        self._unload()
        import llama_cpp

        install_log_capture()
        LOG_LINES.clear()
        kv = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0, "q4_0": llama_cpp.GGML_TYPE_Q4_0}
        t0 = time.perf_counter()
        chatter = io.StringIO()
        try:
            # sys.stdout/stderr are process-wide: two loads at once (the A/B view) would restore each other's.
            with _REDIRECT_LOCK, contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                llm = new_llama(
                    str(path),
                    n_ctx=opts.n_ctx,
                    n_gpu_layers=n_gpu_layers,
                    n_threads=opts.n_threads,
                    n_batch=opts.n_batch,
                    flash_attn=flash_attn,
                    type_k=kv[opts.kv_type],
                    type_v=kv[opts.kv_type],
                    use_mmap=opts.use_mmap,
                    seed=opts.seed if opts.seed >= 0 else llama_cpp.LLAMA_DEFAULT_SEED,
                    lora_path=str(lora) if lora else None,
                    lora_scale=opts.lora_scale,
                    # verbose=False would silence fds 1 and 2 (dup2 to /dev/null) for the whole load, blanking a TUI
                    # drawn on them; llama.cpp's logs go to our capture instead, and the Python-level chatter of
                    # Llama.__init__ is caught here.
                    verbose=True,
                )
            llm.verbose = False  # no per-turn "prefix-match hit" prints
            if lora is not None and not llm._lora_adapter:
                # llama-cpp-python tests the returned pointer against None, but a failed init returns a NULL
                # ctypes pointer, so a wrong adapter slips through. Clear it so close() does not free NULL.
                llm._lora_adapter = None
                llm.close()
                raise ModelFileError(lora, f"llama.cpp could not apply this adapter ({last_llama_error()})")
        except (ValueError, RuntimeError, OSError) as exc:
            detail = last_llama_error() or str(exc)
            if lora is not None and "lora" in str(exc).lower():
                raise ModelFileError(lora, f"llama.cpp could not apply this adapter ({detail})") from None
            raise ModelFileError(path, f"llama.cpp could not load it ({detail})") from None
        try:
            template = self._make_template(llm, opts.chat_template)
            if template.name.startswith("chatml"):
                self._emit(Log("the model has no chat template: using ChatML", "warning"))
        except TuillmError as exc:
            # A broken template in the file: the model still loads; a reply reports it unless overridden.
            template = None
            self._emit(Log(str(exc), "warning"))
        model = llm._model
        bos_id = model.token_bos()
        loaded = _Loaded(
            llm=llm, path=str(path), template=template,  # type: ignore[arg-type]
            n_ctx=min(llm.n_ctx(), opts.n_ctx), n_gpu_layers=n_gpu_layers, add_bos=bool(model.add_bos_token()),
            bos_text=model.token_get_text(bos_id) if bos_id >= 0 else "", lora_path=str(lora) if lora else None,
            options=replace(opts, flash_attn=flash_attn),
        )
        self._loaded = loaded
        event = ModelLoaded(path=str(path), n_ctx=loaded.n_ctx, n_gpu_layers=n_gpu_layers,
                            load_seconds=time.perf_counter() - t0, lora_path=loaded.lora_path)
        self._emit(event)
        return event

    @staticmethod
    def _make_template(llm: Any, override: str | None) -> ChatTemplate:
        model = llm._model
        bos_id, eos_id = model.token_bos(), model.token_eos()
        return load_template(
            llm.metadata,
            override=override,
            bos_token=model.token_get_text(bos_id) if bos_id >= 0 else "",
            eos_token=model.token_get_text(eos_id) if eos_id >= 0 else "",
        )

    def _set_template(self, source: str | None) -> ChatTemplate:
        loaded = self._require()
        template = self._make_template(loaded.llm, source)
        loaded.template = template
        loaded.options = replace(loaded.options, chat_template=source)
        return template

    def _unload(self) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            return
        # close() frees the context, KV cache and weights now instead of whenever the GC runs.
        loaded.llm.close()
        self._emit(ModelUnloaded(loaded.path))

    def _require(self) -> _Loaded:
        if self._loaded is None:
            raise TuillmError("no model is loaded")
        return self._loaded

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        loaded = self._require()
        if loaded.template is None:
            # Re-raise the template's own error now that someone needs it.
            loaded.template = self._make_template(loaded.llm, loaded.options.chat_template)
        text = loaded.template.render(messages, add_generation_prompt=True)
        add_bos = loaded.add_bos and not (loaded.bos_text and text.startswith(loaded.bos_text))
        return loaded.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def _cached_prefix(self, llm: Any, tokens: list[int]) -> int:
        """Prompt tokens ``Llama.generate`` will keep from its KV cache (mirrors its prefix-match rule)."""
        n_past = int(llm.n_tokens)
        if n_past == 0:
            return 0
        import numpy as np

        m = min(n_past, len(tokens))
        differs = np.flatnonzero(llm.input_ids[:m] != np.asarray(tokens[:m], dtype=llm.input_ids.dtype))
        prefix = int(differs[0]) if differs.size else m
        if prefix == len(tokens):
            # The whole prompt is cached: generate replays its last token to get fresh logits.
            return prefix - 1 if prefix > 0 else 0
        return prefix

    def _reply(self, messages: list[dict[str, str]], sampling: Sampling, stop: threading.Event,
               emit: ChatEmit) -> ReplyDone:
        try:
            return self._generate(messages, sampling, stop, emit)
        except TuillmError as exc:
            emit(ReplyFailed(str(exc)))
            raise
        finally:
            with self._stop_lock:
                self._stop_events.discard(stop)

    def _generate(self, messages: list[dict[str, str]], sampling: Sampling, stop: threading.Event,
                  emit: ChatEmit) -> ReplyDone:
        import llama_cpp

        t0 = time.perf_counter()
        loaded = self._require()
        llm = loaded.llm
        if not messages or messages[-1]["role"] != "user":
            raise TuillmError("the conversation must end with a user message")
        if sampling.max_tokens < 1:
            raise TuillmError("max_tokens must be at least 1")
        n_ctx = loaded.n_ctx
        kept, tokens, dropped = _fit_messages(messages, self._prompt_tokens, n_ctx, sampling.max_tokens)
        if dropped:
            emit(ContextTrimmed(
                dropped=dropped, kept=len(kept),
                message=f"context full: left out the {dropped} oldest message{'s' if dropped > 1 else ''} "
                        f"(n_ctx {n_ctx})"))
        if len(tokens) >= n_ctx:
            raise TuillmError(f"the prompt is {len(tokens)} tokens, longer than the context ({n_ctx}); "
                              "shorten the message or load the model with a larger context")
        budget = min(sampling.max_tokens, n_ctx - len(tokens))
        if budget < sampling.max_tokens:
            emit(Log(f"reply limited to {budget} tokens by the context size ({n_ctx})", "warning"))
        if sampling.seed is not None and sampling.seed >= 0:
            llm.set_seed(sampling.seed)

        cached = self._cached_prefix(llm, tokens)
        if stop.is_set():  # stopped while queued: do not even evaluate the prompt
            return self._finish(emit, llm, "", ReplyStats(len(tokens), cached, 0, 0.0, 0.0,
                                                          time.perf_counter() - t0, "cancelled", n_ctx))
        emit(ReplyStarted(prompt_tokens=len(tokens), cached_tokens=cached))
        vocab = llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces: list[str] = []
        generated = 0
        finish = "length"
        t_first = t_last = 0.0
        gen = llm.generate(
            tokens,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            reset=True,
        )
        # A long prompt takes seconds to evaluate: llama.cpp polls this between graph nodes so a stop lands
        # mid-evaluation. Only while the prompt is evaluated; per-token decoding checks the flag itself.
        ctx = llm._ctx.ctx
        abort = _native_abort()
        if abort is not None and isinstance(stop, _StopFlag):
            llama_cpp.llama_set_abort_callback(ctx, abort, ctypes.cast(stop.c_flag, ctypes.c_void_p))
        else:
            abort = llama_cpp.ggml_abort_callback(lambda _data: stop.is_set())
            llama_cpp.llama_set_abort_callback(ctx, abort, None)
        aborting = True
        try:
            for token in gen:
                if aborting:
                    llama_cpp.llama_set_abort_callback(ctx, llama_cpp.ggml_abort_callback(), None)
                    aborting = False
                if stop.is_set():
                    finish = "cancelled"
                    break
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                generated += 1
                t_last = time.perf_counter()
                if generated == 1:
                    t_first = t_last
                text = decoder.decode(_piece(vocab, token))
                pieces.append(text)
                emit(Token(text))
                if generated >= budget or llm.n_tokens >= n_ctx:
                    finish = "length"
                    break
            else:
                finish = "stop"
        except RuntimeError as exc:
            if not stop.is_set():
                raise TuillmError(f"llama.cpp failed while generating: {last_llama_error() or exc}") from None
            finish = "cancelled"  # the prompt evaluation was aborted; llama.cpp drops the unfinished batch
        finally:
            if aborting:
                llama_cpp.llama_set_abort_callback(ctx, llama_cpp.ggml_abort_callback(), None)
            gen.close()
        tail = decoder.decode(b"", final=True)
        if tail:
            pieces.append(tail)
            emit(Token(tail))
        decode_time = t_last - t_first
        stats = ReplyStats(
            prompt_tokens=len(tokens),
            cached_tokens=cached,
            generated_tokens=generated,
            ttft_s=(t_first - t0) if generated else 0.0,
            tokens_per_s=(generated - 1) / decode_time if generated > 1 and decode_time > 0 else 0.0,
            total_s=time.perf_counter() - t0,
            finish_reason=finish,
            n_ctx=n_ctx,
        )
        return self._finish(emit, llm, "".join(pieces), stats)

    @staticmethod
    def _finish(emit: ChatEmit, llm: Any, text: str, stats: ReplyStats) -> ReplyDone:
        done = ReplyDone(text=text, stats=replace(stats, context_used=int(llm.n_tokens)))
        emit(done)
        return done


def _piece(vocab: Any, token: int) -> bytes:
    """The bytes of one token as text (special tokens render as nothing)."""
    import llama_cpp

    size = 64
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, False)
    if n < 0:  # the piece is longer than the buffer: llama.cpp says how long
        size = -n
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, False)
    return buf.raw[: max(n, 0)]
