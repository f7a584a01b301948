"""The chat engine: one model owned by one worker thread, streaming replies as events.

A ``Llama`` is not thread-safe, so every call that touches it runs on the session's single worker thread; the
public methods only submit work and return ``Future``s. Front ends pass an ``emit`` callback (called on the worker
thread: a Textual pane forwards with ``post_message``) and ask a running reply to stop with ``stop()``, which is
honoured before the next token is emitted. What is particular to llama.cpp (loading, the vocabulary, the abort
hook, prefix matching) is ``core.llama.model.LlamaModel``'s; this module is about the chat.

Prefix reuse: each turn renders the whole conversation and hands its tokens to the model, which keeps the part of
its KV cache that matches the new prompt's prefix; only the new tokens are evaluated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path

from tuillm.core.chat.backend import ChatMessage
from tuillm.core.chat.decoding import decode_reply
from tuillm.core.chat.events import (
    ChatEmit,
    ChatEvent,
    ContextTrimmed,
    ModelLoaded,
    ModelUnloaded,
    ReplyDone,
    ReplyFailed,
    ReplyStarted,
    ReplyStats,
)
from tuillm.core.chat.fitting import fit_messages
from tuillm.core.chat.plain import PlainPrompt, Prompt
from tuillm.core.chat.template import ChatTemplate, TemplateStopped, load_template
from tuillm.core.chat.worker import Worker
from tuillm.core.errors import ModelFileError, TuillmError, error_text
from tuillm.core.events import Log
from tuillm.core.llama.abort import StopFlag
from tuillm.core.llama.model import LlamaModel, PromptScore
from tuillm.core.llama.options import LoadOptions, Sampling
from tuillm.core.models.memory import default_gpu_layers
from tuillm.core.paths import expand_user


def _template(model: LlamaModel, override: str | None, path: str | Path) -> ChatTemplate:
    return load_template(model.metadata, override=override, bos_token=model.bos_text, eos_token=model.eos_text,
                         model=Path(path).name)


class PromptTooLong(TuillmError):
    """The prompt alone fills the context (the message names both numbers)."""


def _too_long(tokens: int, n_ctx: int) -> PromptTooLong:
    return PromptTooLong(f"the prompt is {tokens} tokens, longer than the context ({n_ctx}); shorten the message "
                         "or load the model with a larger context")


@dataclass
class _Loaded:
    model: LlamaModel
    path: str
    template: ChatTemplate | None  # None: the file's template is broken; a reply raises its error
    n_ctx: int
    n_gpu_layers: int
    lora_path: str | None = None
    options: LoadOptions = field(default_factory=LoadOptions)


class ChatSession:
    """One model, one worker thread. Methods are safe to call from any thread. The real ``ChatBackend``."""

    def __init__(self, emit: ChatEmit | None = None) -> None:
        self._emit: ChatEmit = emit or (lambda _event: None)
        self._worker = Worker("tuillm-chat")  # its thread ends when idle (core.chat.worker: OpenMP)
        self._loaded: _Loaded | None = None
        self._stop_lock = threading.Lock()
        self._stop_events: set[StopFlag] = set()  # one per reply or scoring not finished yet
        self._closed = False

    # --- state readable from any thread (plain attribute reads) ---
    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def model_path(self) -> str | None:
        return self._loaded.path if self._loaded else None

    @property
    def lora_path(self) -> str | None:
        return self._loaded.lora_path if self._loaded else None

    @property
    def n_ctx(self) -> int:
        return self._loaded.n_ctx if self._loaded else 0

    @property
    def context_used(self) -> int:
        """Tokens in the KV cache now (prompt + reply of the last turn)."""
        return self._loaded.model.n_tokens if self._loaded else 0

    @property
    def options(self) -> LoadOptions | None:
        """The options the model was loaded with (flash_attn as actually used)."""
        return self._loaded.options if self._loaded else None

    @property
    def template(self) -> ChatTemplate | None:
        return self._loaded.template if self._loaded else None

    # --- work, run on the worker thread ---
    def load(self, path: str | Path, options: LoadOptions | None = None) -> Future[ModelLoaded]:
        return self._worker.submit(self._load, expand_user(path), options or LoadOptions())

    def reply(self, messages: Sequence[ChatMessage] | PlainPrompt, sampling: Sampling | None = None,
              listener: ChatEmit | None = None, stop: StopFlag | None = None) -> Future[ReplyDone]:
        """Stream the assistant's answer to ``messages`` (the whole conversation, system prompt first), or the
        continuation of a ``PlainPrompt`` (as is, without the chat template).

        The reply's events go to the session's emit, then to ``listener`` if given (e.g. a store saver).
        ``stop``: the caller's own flag, to end this reply alone (``stop()`` ends them all; the server stops one
        request whose client left).
        """
        stop = self._track(stop)
        emit = self._emit
        if listener is not None:
            def emit(event: ChatEvent) -> None:
                self._emit(event)
                listener(event)
        prompt = messages if isinstance(messages, PlainPrompt) else [dict(m) for m in messages]
        return self._worker.submit(self._reply, prompt, sampling or Sampling(), stop, emit)

    def stop(self) -> None:
        """Ask the running (and any queued) reply or scoring to end; no token is emitted after the next one is
        decoded."""
        with self._stop_lock:
            for event in self._stop_events:
                event.set()

    def _track(self, stop: StopFlag | None) -> StopFlag:
        """``stop`` (or a new flag) for work about to be queued: ``stop()`` sets it until the work ends
        (``_untrack``), so a stop asked while the work still waits in the queue ends it too."""
        stop = stop or StopFlag()
        with self._stop_lock:
            self._stop_events.add(stop)
        return stop

    def _untrack(self, stop: StopFlag) -> None:
        with self._stop_lock:
            self._stop_events.discard(stop)

    def set_template(self, source: str | None) -> Future[ChatTemplate]:
        """Replace the chat template (None: back to the GGUF's)."""
        return self._worker.submit(self._set_template, source)

    def score(self, prompt: PlainPrompt, top: int, stop: StopFlag | None = None) -> Future[PromptScore]:
        """The tokens of ``prompt`` with their log-probabilities and ``top`` alternatives each: completions'
        ``echo``. A reply to the same prompt then starts from the cache. ``stop`` (or ``stop()``) ends it with a
        ``TuillmError``: a long prompt takes seconds."""
        return self._worker.submit(self._score, prompt, top, self._track(stop))

    def count_tokens(self, messages: Sequence[ChatMessage]) -> Future[int]:
        return self._worker.submit(lambda: len(self._prompt_tokens([dict(m) for m in messages])))

    def reset_cache(self) -> Future[None]:
        """Forget the evaluated prompt: the next reply evaluates its whole prompt again."""
        return self._worker.submit(lambda: self._require().model.reset())

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

    # --- worker thread: loading ---
    def _load(self, path: Path, opts: LoadOptions) -> ModelLoaded:
        n_gpu_layers, flash_attn = self._check_load(path, opts)
        self._unload()
        t0 = time.perf_counter()
        model = LlamaModel.load(path, replace(opts, n_gpu_layers=n_gpu_layers, flash_attn=flash_attn))
        try:
            template: ChatTemplate | None = _template(model, opts.chat_template, path)
            if template.name.startswith("chatml"):
                self._emit(Log("the model has no chat template: using ChatML", "warning"))
        except TuillmError:
            # A broken template: the model still loads (another template can be set); each reply reports the
            # template's one line, so it is said once, where it stops the user.
            template = None
        lora = str(expand_user(opts.lora_path)) if opts.lora_path else None
        loaded = _Loaded(model=model, path=str(path), template=template, n_ctx=min(model.n_ctx, opts.n_ctx),
                         n_gpu_layers=n_gpu_layers, lora_path=lora, options=replace(opts, flash_attn=flash_attn))
        self._loaded = loaded
        event = ModelLoaded(path=str(path), n_ctx=loaded.n_ctx, n_gpu_layers=n_gpu_layers,
                            load_seconds=time.perf_counter() - t0, lora_path=loaded.lora_path)
        self._emit(event)
        return event

    def _check_load(self, path: Path, opts: LoadOptions) -> tuple[int, bool]:
        """Refuses what must not reach llama.cpp (before the loaded model is let go); returns the GPU layers and
        flash attention to load with."""
        from tuillm.core.models.memory import load_refusal
        from tuillm.core.models.metadata import read_info, read_lora_info

        info = read_info(path)  # missing file, bad magic, truncated header: a ModelFileError naming the path
        if info.format != "gguf":
            raise ModelFileError(path, "chat needs a GGUF file (convert the checkpoint first)")
        if info.kind == "adapter":
            raise ModelFileError(path, "is a LoRA adapter, not a model (pass it with --lora)")
        if opts.lora_path:
            read_lora_info(expand_user(opts.lora_path))
        n_gpu_layers = (default_gpu_layers(info, opts.n_ctx, opts.kv_type) if opts.n_gpu_layers is None
                        else opts.n_gpu_layers)
        if opts.check_memory:
            # The same check the Models pane's fit marker and the Chat pane make before loading.
            refusal = load_refusal(info, replace(opts, n_gpu_layers=n_gpu_layers))
            if refusal is not None:
                raise TuillmError(refusal)
        if info.context_length and opts.n_ctx > info.context_length:
            self._emit(Log(f"context {opts.n_ctx} is longer than the model was trained for "
                           f"({info.context_length}); quality may drop", "warning"))
        if opts.kv_type != "f16" and not opts.flash_attn:
            # llama.cpp quantizes the V cache only with flash attention.
            self._emit(Log(f"KV cache {opts.kv_type} needs flash attention: turned it on"))
            return n_gpu_layers, True
        return n_gpu_layers, opts.flash_attn

    def _set_template(self, source: str | None) -> ChatTemplate:
        loaded = self._require()
        template = _template(loaded.model, source, loaded.path)
        loaded.template = template
        loaded.options = replace(loaded.options, chat_template=source)
        return template

    def _unload(self) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            return
        loaded.model.close()
        self._emit(ModelUnloaded(loaded.path))

    def _require(self) -> _Loaded:
        if self._loaded is None:
            raise TuillmError("no model is loaded")
        return self._loaded

    # --- worker thread: replies ---
    def _prompt_tokens(self, messages: list[dict[str, str]], stop: StopFlag | None = None) -> list[int]:
        loaded = self._require()
        if loaded.template is None:
            # Re-raise the template's own error now that someone needs it.
            loaded.template = _template(loaded.model, loaded.options.chat_template, loaded.path)
        # Under the template's budget; a stop (Esc, Ctrl-C, closing) ends the render at once.
        text = loaded.template.render(messages, add_generation_prompt=True, stop=stop)
        model = loaded.model
        add_bos = model.add_bos and not (model.bos_text and text.startswith(model.bos_text))
        return model.tokenize(text, add_bos=add_bos)

    def _reply(self, prompt: Prompt, sampling: Sampling, stop: StopFlag, emit: ChatEmit) -> ReplyDone:
        try:
            return self._generate(prompt, sampling, stop, emit)
        except Exception as exc:  # a bug too: whoever waits on the events (a server's request) must learn of it
            emit(ReplyFailed(error_text(exc)))
            raise
        finally:
            self._untrack(stop)

    def _score(self, prompt: PlainPrompt, top: int, stop: StopFlag) -> PromptScore:
        try:
            loaded = self._require()
            tokens = prompt.tokens(loaded.model)
            if len(tokens) >= loaded.n_ctx:
                raise _too_long(len(tokens), loaded.n_ctx)
            return loaded.model.score(tokens, top, stop)
        finally:
            self._untrack(stop)

    def _fit_prompt(self, prompt: Prompt, sampling: Sampling, stop: StopFlag, emit: ChatEmit,
                    ) -> tuple[list[int], int]:
        """The prompt's tokens (oldest turns left out if need be) and the reply's token budget."""
        if not isinstance(prompt, PlainPrompt) and (not prompt or prompt[-1]["role"] != "user"):
            raise TuillmError("the conversation must end with a user message")
        loaded = self._require()
        model, n_ctx = loaded.model, loaded.n_ctx
        top = max((token for token, _ in sampling.logit_bias), default=-1)
        if top >= model.n_vocab:  # refused before any work, not mid-reply
            raise TuillmError(f"logit_bias: token {top} is not in the model's vocabulary (0 to {model.n_vocab - 1})")
        if isinstance(prompt, PlainPrompt):  # nothing to leave out
            kept, tokens, dropped = [], prompt.tokens(model), 0
        else:
            kept, tokens, dropped = fit_messages(prompt, lambda m: self._prompt_tokens(m, stop), n_ctx,
                                                 sampling.max_tokens)
        if len(tokens) >= n_ctx:  # first: leaving messages out did not make it fit, so it is not said to have
            raise _too_long(len(tokens), n_ctx)
        if dropped:
            emit(ContextTrimmed(
                dropped=dropped, kept=len(kept),
                message=f"context full: left out the {dropped} oldest message{'s' if dropped > 1 else ''} "
                        f"(n_ctx {n_ctx})"))
        budget = min(sampling.max_tokens, n_ctx - len(tokens))
        if budget < sampling.max_tokens:
            emit(Log(f"reply limited to {budget} tokens by the context size ({n_ctx})", "warning"))
        return tokens, budget

    def _generate(self, prompt: Prompt, sampling: Sampling, stop: StopFlag, emit: ChatEmit) -> ReplyDone:
        t0 = time.perf_counter()
        loaded = self._require()
        try:
            tokens, budget = self._fit_prompt(prompt, sampling, stop, emit)
        except TemplateStopped:  # stopped while the template rendered: nothing was evaluated
            tokens, budget = [], 0
        if sampling.seed is not None and sampling.seed >= 0:
            loaded.model.set_seed(sampling.seed)
        cached = loaded.model.cached_prefix(tokens) if tokens else 0
        if stop.is_set():  # stopped while queued or rendering: do not even evaluate the prompt
            return self._finish(emit, loaded.model, "", ReplyStats(len(tokens), cached, 0, 0.0, 0.0,
                                                                   time.perf_counter() - t0, "cancelled",
                                                                   loaded.n_ctx))
        generated = loaded.model.generate(tokens, sampling, stop)  # a grammar llama.cpp refuses raises here
        emit(ReplyStarted(prompt_tokens=len(tokens), cached_tokens=cached))
        out = decode_reply(loaded.model, loaded.n_ctx, generated, sampling, budget, stop, emit)
        decode_time = out.t_last - out.t_first
        stats = ReplyStats(
            prompt_tokens=len(tokens),
            cached_tokens=cached,
            generated_tokens=out.generated,
            ttft_s=(out.t_first - t0) if out.generated else 0.0,
            tokens_per_s=(out.generated - 1) / decode_time if out.generated > 1 and decode_time > 0 else 0.0,
            total_s=time.perf_counter() - t0,
            finish_reason=out.finish,
            n_ctx=loaded.n_ctx,
        )
        return self._finish(emit, loaded.model, "".join(out.pieces), stats)

    @staticmethod
    def _finish(emit: ChatEmit, model: LlamaModel, text: str, stats: ReplyStats) -> ReplyDone:
        done = ReplyDone(text=text, stats=replace(stats, context_used=model.n_tokens))
        emit(done)
        return done
