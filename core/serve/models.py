"""Which models the server may serve, by name, and the one loaded model that serves them.

Names are ``tuillm models``' names (plus ``demo``), or a file given on the command line: never a path taken from
a request. One ``ChatSession`` holds the loaded model, so every request is queued on its one worker thread and
served in order; asking for another model swaps it (after the requests queued before), with the chat's memory
check (``ChatSession`` refuses a load the estimate says does not fit, naming the estimate). A model idle for
``idle_unload`` seconds is unloaded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tuillm.core.chat.engine import ChatSession
from tuillm.core.chat.events import ChatEmit, ReplyDone
from tuillm.core.errors import ModelFileError, TuillmError
from tuillm.core.llama.abort import StopFlag
from tuillm.core.llama.options import LoadOptions, Sampling
from tuillm.core.models.metadata import ModelInfo, read_info, read_lora_info
from tuillm.core.settings import Config, load_options_for


class UnknownModel(TuillmError):
    """A request named a model the server does not serve."""


class LoadFailed(TuillmError):
    """The model could not be loaded (too big for the memory, a broken file): the message says why."""


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
        name = path.stem if Path(spec).expanduser().exists() else spec
        models[name] = _served(name, path)
    for adapter in adapters:
        if not specs:
            raise TuillmError("--lora needs the base model named first (tuillm serve BASE --lora ADAPTER.gguf)")
        lora = Path(adapter).expanduser()
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
        self._active = 0  # replies queued or running
        self._count_lock = threading.Lock()  # _active changes on the loop and on the worker thread
        self._last_used = time.monotonic()

    def find(self, name: str) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            # Ollama clients add ":latest" to a name without a tag.
            model = self.models.get(name.removesuffix(":latest"))
        if model is None:
            raise UnknownModel(f"model '{name}' not found; served here: {', '.join(sorted(self.models))}")
        return model

    @property
    def loaded(self) -> ServedModel | None:
        return self._wanted if self.session.loaded else None

    def load_options(self, model: ServedModel) -> LoadOptions:
        """The chat's load for this model (settings file, the model's own settings, ``--ctx`` on top)."""
        return load_options_for(self.config, model.path, **{**self.load, "n_ctx": self.n_ctx},
                                lora_path=str(model.lora) if model.lora else None)

    async def ensure(self, model: ServedModel) -> float:
        """Queues ``model``'s load when another is (or will be) loaded; returns the seconds the load took."""
        if self._wanted == model and self.session.loaded:
            return 0.0
        previous, self._wanted = self._wanted, None
        try:
            event = await asyncio.wrap_future(self.session.load(model.path, self.load_options(model)))
        except TuillmError as exc:
            self._wanted = self._still_loaded(previous)
            raise LoadFailed(str(exc)) from None
        except BaseException:
            self._wanted = self._still_loaded(previous)
            raise
        self._wanted = model
        return event.load_seconds

    def _still_loaded(self, previous: ServedModel | None) -> ServedModel | None:
        """After a failed load: a refused one (too big) leaves the previous model loaded, a failed one none."""
        options = self.session.options
        if previous is None or options is None or self.session.model_path != str(previous.path):
            return None
        return previous if options.lora_path == _lora(previous) else None

    async def preload(self, model: ServedModel) -> None:
        """Loads ``model`` now (Ollama's empty request), in turn with the replies."""
        async with self._swap:
            await self.ensure(model)

    async def reply(self, model: ServedModel, messages: list[dict[str, str]], sampling: Sampling,
                    listener: ChatEmit, stop: StopFlag, raw: bool = False) -> tuple[Future[ReplyDone], float]:
        """Queues the reply (after the model's load, if need be); its future and the load's seconds."""
        async with self._swap:  # in arrival order: a load and the replies after it stay together
            load_s = await self.ensure(model)
            with self._count_lock:
                self._active += 1
            future = self.session.reply(messages, sampling, listener, stop=stop, raw=raw)
        future.add_done_callback(self._finished)
        return future, load_s

    def _finished(self, _future: Future[ReplyDone]) -> None:
        with self._count_lock:
            self._active -= 1
            self._last_used = time.monotonic()

    async def unload_when_idle(self) -> None:
        """Runs for the server's life: unloads the model after ``idle_unload`` seconds without requests."""
        if self.idle_unload <= 0:
            return
        while True:
            await asyncio.sleep(min(self.idle_unload / 4, 1.0))
            idle = time.monotonic() - self._last_used
            if self._active == 0 and self._wanted is not None and idle >= self.idle_unload:
                async with self._swap:
                    if self._active == 0:
                        await asyncio.wrap_future(self.session.unload())
                        self._wanted = None

    def close(self) -> None:
        self.session.close()


def _lora(model: ServedModel) -> str | None:
    return str(model.lora) if model.lora else None
