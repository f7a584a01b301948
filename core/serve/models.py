"""Which models the server may serve, by name, and the one loaded model that serves them.

Names are ``tuillm models``' names (plus ``demo``), or a file given on the command line: never a path taken from
a request. One ``ChatSession`` holds the loaded model, so every request is queued on its one worker thread and
served in order; asking for another model swaps it (after the requests queued before), with the chat's memory
check (``ChatSession`` refuses a load the estimate says does not fit, naming the estimate). A model idle for
``idle_unload`` seconds is unloaded, or for the last request's ``keep_alive`` (Ollama's: each request sets how long
the model stays after it; 0 unloads it once the replies queued are done, inf keeps it).

A request may ask for a context size (Ollama's ``num_ctx``): the model is loaded again with it when the loaded one
has another, as Ollama does. A request that asks for none takes the model as it is loaded when its context is at
least the server's (``--ctx``, else the settings), else loads it with the server's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from tuillm.core.chat.engine import ChatSession
from tuillm.core.chat.events import ChatEmit, ReplyDone
from tuillm.core.chat.plain import PlainPrompt, Prompt
from tuillm.core.errors import ModelFileError, TuillmError
from tuillm.core.llama.abort import StopFlag
from tuillm.core.llama.model import PromptScore
from tuillm.core.llama.options import LoadOptions, Sampling
from tuillm.core.models.metadata import ModelInfo, read_info, read_lora_info
from tuillm.core.paths import expand_user
from tuillm.core.serve.keepalive import KeepAlive
from tuillm.core.settings import Config, load_options_for
from tuillm.core.text import shown

_T = TypeVar("_T")
MAX_NAME_SHOWN = 200  # a requested name echoed in an error is cut there (a 100,000-character name was echoed whole)


@dataclass(frozen=True)
class LoadTerms:
    """What a request asks of the model beside its answer (Ollama's ``keep_alive`` and ``num_ctx``)."""

    keep: float | None = None  # seconds it stays loaded after the request (None: the server's idle_unload)
    n_ctx: int | None = None  # the context it must have (None: as it is loaded, else the server's)


SERVER_TERMS = LoadTerms()  # the server's own: --idle-unload, the context as loaded


class UnknownModel(TuillmError):
    """A request named a model the server does not serve."""


class LoadFailed(TuillmError):
    """The model could not be loaded (too big for the memory, a broken file): the message says why."""


class ContextTooLarge(TuillmError):
    """The context a request asked for (Ollama's ``num_ctx``) does not fit the memory estimate, where the server's
    own would: the client's error (a 400); a model that does not fit at the server's context is a 503."""


@dataclass(frozen=True)
class ServedModel:
    name: str
    info: ModelInfo
    lora: Path | None = None  # a LoRA adapter GGUF served over ``info`` under its own name
    created: int = 0  # the file's mtime, in seconds (OpenAI's ``created``, Ollama's ``modified_at``)
    base: str = ""  # for an adapter: the name of the model it is served over

    @property
    def path(self) -> Path:
        return self.info.path


def _served(name: str, path: Path, lora: Path | None = None) -> ServedModel:
    info = read_info(path)
    if info.format != "gguf" or info.kind != "model":
        raise ModelFileError(path, "cannot be served: a model GGUF is needed (convert a checkpoint first)")
    if lora is not None:
        read_lora_info(lora)
    return ServedModel(name, info, lora, int(path.stat().st_mtime))


def served_models(specs: Sequence[str], adapters: Sequence[str], config: Config) -> dict[str, ServedModel]:
    """The models to serve by name: each of ``specs`` (a path, a catalog name or ``demo``; a file is named by its
    stem), or every GGUF model of the catalog when none is given; each of ``adapters`` (LoRA GGUFs) is served
    under its file's stem over the first of ``specs``."""
    from tuillm.core.models.catalog import discover, resolve_model

    models: dict[str, ServedModel] = {}
    if not specs:
        for entry in discover(config=config).entries:
            if entry.info.format == "gguf":
                models[entry.name] = ServedModel(entry.name, entry.info, None, int(entry.path.stat().st_mtime))
        if not models:
            raise TuillmError("no GGUF model to serve: name one (a path, a name from `tuillm models`, or demo)")
    for spec in specs:
        path = resolve_model(spec, config)
        name = path.stem if expand_user(spec).exists() else spec
        models[name] = _served(name, path)
    for adapter in adapters:
        if not specs:
            raise TuillmError("--lora needs the base model named first (tuillm serve BASE --lora ADAPTER.gguf)")
        lora = expand_user(adapter)
        base = next(iter(models.values()))
        models[lora.stem] = replace(_served(lora.stem, base.path, lora), base=base.name)
    return models


class ModelHost:
    """The served models and the one loaded among them. Async methods run on the server's event loop."""

    def __init__(self, models: dict[str, ServedModel], config: Config, *, n_ctx: int | None = None,
                 idle_unload: float = 0.0, emit: ChatEmit | None = None, load: Mapping[str, Any] | None = None,
                 ) -> None:
        self.models = models
        self.config = config
        self.n_ctx = n_ctx
        self.load = dict(load or {})  # LoadOptions fields given on the command line, over the settings
        self.idle_unload = idle_unload  # 0: never
        self.session = ChatSession(emit)
        self._swap = asyncio.Lock()
        self._wanted: ServedModel | None = None  # what is loaded once the queued work is done
        self.keeper = KeepAlive(lambda: self.idle_unload)  # replies queued or running, and the idle time

    def find(self, name: str) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            # Ollama clients add ":latest" to a name without a tag.
            model = self.models.get(name.removesuffix(":latest"))
        if model is None:
            raise UnknownModel(f"model '{shown(name, MAX_NAME_SHOWN)}' not found; served here: "
                               f"{', '.join(sorted(self.models))}")
        return model

    @property
    def loaded(self) -> ServedModel | None:
        return self._wanted if self.session.loaded else None

    def load_options(self, model: ServedModel, n_ctx: int | None = None) -> LoadOptions:
        """The chat's load for this model (settings file, the model's own settings, ``--ctx`` on top), with the
        context a request asked for (``n_ctx``; None: the server's)."""
        return load_options_for(self.config, model.path, **{**self.load, "n_ctx": n_ctx or self.n_ctx},
                                lora_path=str(model.lora) if model.lora else None)

    def _serves(self, model: ServedModel, n_ctx: int | None) -> bool:
        """Whether ``model`` is loaded as asked: with the context ``n_ctx`` (as requested, whatever llama.cpp
        rounded it to), or, when None, with at least the server's (a larger one another request asked for serves;
        a smaller one would refuse prompts the server's context takes)."""
        options = self.session.options
        if self._wanted != model or not self.session.loaded or options is None:
            return False
        if n_ctx is not None:
            return options.n_ctx == n_ctx
        return options.n_ctx >= self.load_options(model).n_ctx

    async def ensure(self, model: ServedModel, n_ctx: int | None = None) -> float:
        """Queues ``model``'s load (with the context ``n_ctx``, when given) unless it is (or will be) loaded so;
        returns the seconds the load took."""
        if self._serves(model, n_ctx):
            return 0.0
        previous, self._wanted = self._wanted, None
        try:
            event = await asyncio.wrap_future(self.session.load(model.path, self.load_options(model, n_ctx)))
        except TuillmError as exc:
            self._wanted = self._still_loaded(previous)
            raise self._load_error(model, n_ctx, exc) from None
        except BaseException:
            self._wanted = self._still_loaded(previous)
            raise
        self._wanted = model
        self.keeper.touch()
        return event.load_seconds

    def _load_error(self, model: ServedModel, n_ctx: int | None, exc: TuillmError) -> TuillmError:
        """Whose error a failed load is: the request's when the memory estimate refuses the context it asked for
        and would take the server's own (a 400), else the server's (a 503)."""
        if n_ctx is not None and not isinstance(exc, ModelFileError) \
                and _refused(model, self.load_options(model, n_ctx)) and not _refused(model, self.load_options(model)):
            return ContextTooLarge(str(exc))
        return LoadFailed(str(exc))

    def _still_loaded(self, previous: ServedModel | None) -> ServedModel | None:
        """After a failed load: a refused one (too big) leaves the previous model loaded, a failed one none."""
        options = self.session.options
        if previous is None or options is None or self.session.model_path != str(previous.path):
            return None
        return previous if options.lora_path == _lora(previous) else None

    async def preload(self, model: ServedModel, terms: LoadTerms) -> None:
        """Loads ``model`` now (Ollama's empty request) on ``terms``, in turn with the replies."""
        async with self._swap:
            self.keeper.keep = terms.keep
            await self.ensure(model, terms.n_ctx)

    async def release(self, model: ServedModel) -> None:
        """Ollama's empty request with ``keep_alive: 0``: unloads ``model`` now if it is loaded and idle, else once
        the replies queued are done."""
        async with self._swap:
            self.keeper.keep = 0.0
            if self._wanted == model and self.keeper.active == 0:
                await self._unload()

    async def reply(self, model: ServedModel, prompt: Prompt, sampling: Sampling,
                    listener: ChatEmit, stop: StopFlag, terms: LoadTerms = SERVER_TERMS,
                    ) -> tuple[Future[ReplyDone], float]:
        """Queues the reply to ``prompt`` (messages, or a plain prompt) after the model's load on ``terms``, if need
        be; its future and the load's seconds."""
        return await self._queue(model, terms, lambda: self.session.reply(prompt, sampling, listener, stop=stop))

    async def score(self, model: ServedModel, prompt: PlainPrompt, top: int, stop: StopFlag) -> PromptScore:
        """The prompt's tokens with their log-probabilities (completions' ``echo``), in turn with the replies;
        ``stop`` ends the scoring (a client that left)."""
        future, _ = await self._queue(model, SERVER_TERMS, lambda: self.session.score(prompt, top, stop))
        return await asyncio.wrap_future(future)

    async def _queue(self, model: ServedModel, terms: LoadTerms, submit: Callable[[], Future[_T]],
                     ) -> tuple[Future[_T], float]:
        """Queues ``submit``'s work on the session (after ``model``'s load on ``terms``, if need be), counted as
        active until it is done; its future and the load's seconds."""
        async with self._swap:  # in arrival order: a load and the work after it stay together
            load_s = await self.ensure(model, terms.n_ctx)
            self.keeper.keep = terms.keep
            self.keeper.begin()
            future = submit()
        future.add_done_callback(lambda _future: self.keeper.end())
        return future, load_s

    def expires_in(self) -> float:
        """Seconds until the loaded model is unloaded (inf: kept), counted from its last use."""
        return self.keeper.expires_in()

    async def unload_when_idle(self) -> None:
        """Runs for the server's life: unloads the model once idle for its keep-alive (``KeepAlive``)."""
        await self.keeper.unload_when_idle(lambda: self._wanted is not None, self._swap, self._unload)

    async def _unload(self) -> None:
        await asyncio.wrap_future(self.session.unload())
        self._wanted = None

    def close(self) -> None:
        self.session.close()


def _refused(model: ServedModel, options: LoadOptions) -> bool:
    """Whether the memory estimate refuses ``model`` with ``options``, as the chat's load checks it (the engine
    says only why; this tells its refusal apart from a file that failed to load)."""
    from tuillm.core.models.memory import default_gpu_layers, load_refusal

    layers = options.n_gpu_layers
    if layers is None:
        layers = default_gpu_layers(model.info, options.n_ctx, options.kv_type)
    return options.check_memory and load_refusal(model.info, replace(options, n_gpu_layers=layers)) is not None


def _lora(model: ServedModel) -> str | None:
    return str(model.lora) if model.lora else None
