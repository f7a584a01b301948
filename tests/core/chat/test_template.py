"""Chat templates render in a sandbox: GGUF templates are untrusted code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.gguf_copy import copy_gguf
from tuillm.core.chat.engine import ChatSession
from tuillm.core.chat.events import ReplyFailed
from tuillm.core.chat.template import (
    CHATML_TEMPLATE,
    ChatTemplate,
    ChatTemplateError,
    load_template,
    read_gguf_template,
)
from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import LoadOptions, Sampling

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def hostile_templates(marker: Path) -> dict[str, str]:
    """Templates that try to reach Python internals; each would create ``marker`` if it got code execution."""
    cmd = f"touch {marker}"
    return {
        "class_mro": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "mro_popen": "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == 'Popen' %}"
                     f"{{{{ c('{cmd}', shell=True) }}}}{{% endif %}}{{% endfor %}}",
        "cycler_globals": f"{{{{ cycler.__init__.__globals__.os.system('{cmd}') }}}}",
        "joiner_globals": f"{{{{ joiner.__init__.__globals__['os'].popen('{cmd}').read() }}}}",
        "lipsum_globals": f"{{{{ lipsum.__globals__['os'].system('{cmd}') }}}}",
        "namespace_init": f"{{{{ namespace.__init__.__globals__['os'].system('{cmd}') }}}}",
        "self_globals": f"{{{{ self.__init__.__globals__['__builtins__']['__import__']('os').system('{cmd}') }}}}",
        "format_escape": "{{ '{0.__class__.__mro__}'.format(messages) }}",
        "getattr_filter": "{{ (messages|attr('__class__')).__mro__ }}",
        "mutate_messages": "{% set _ = messages.append({'role': 'user', 'content': 'x'}) %}{{ messages }}",
        "func_globals": "{{ raise_exception.__globals__ }}",
    }


def test_renders_chatml_like_transformers() -> None:
    text = ChatTemplate(CHATML_TEMPLATE).render(MESSAGES)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert not ChatTemplate(CHATML_TEMPLATE).render(MESSAGES, add_generation_prompt=False).endswith("assistant\n")


def test_gguf_template_preferred_and_override_wins(demo_gguf: Path) -> None:
    source = read_gguf_template(str(demo_gguf))
    assert source and "<|im_start|>" in source
    assert load_template({"tokenizer.chat_template": source}).name == "gguf"
    over = load_template({"tokenizer.chat_template": source}, override="{{ messages[-1]['content'] }}!")
    assert over.name == "override" and over.render(MESSAGES) == "Hi!"
    assert load_template({}).source == CHATML_TEMPLATE


def test_bos_eos_and_raise_exception() -> None:
    t = ChatTemplate("{{ bos_token }}{% if messages[0]['role'] != 'user' %}"
                     "{{ raise_exception('roles must start with user') }}{% endif %}", bos_token="<s>")
    assert t.render([{"role": "user", "content": "x"}]) == "<s>"
    with pytest.raises(ChatTemplateError, match="roles must start with user"):
        t.render(MESSAGES)


@pytest.mark.parametrize("bad", ["{% for %}", "{{ 1/0 }}", "{{ messages[99] }}{{ 1 + 'a' }}",
                                 "{% for i in range(10**9) %}x{% endfor %}"])
def test_broken_templates_are_one_clean_error(bad: str) -> None:
    with pytest.raises(ChatTemplateError) as info:
        ChatTemplate(bad).render(MESSAGES)
    assert "\n" not in str(info.value)


def test_runaway_output_is_stopped() -> None:
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}"
    with pytest.raises(ChatTemplateError, match="runaway"):
        ChatTemplate(loop).render(MESSAGES)


def test_hostile_templates_never_execute(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for name, source in hostile_templates(marker).items():
        if name == "func_globals":
            # Printing an unsafe attribute gives the sandbox's empty Undefined: an empty prompt, refused.
            with pytest.raises(ChatTemplateError, match="renders an empty prompt"):
                ChatTemplate(source).render(MESSAGES)
            continue
        with pytest.raises(ChatTemplateError, match="unsafe"):
            ChatTemplate(source).render(MESSAGES)
    assert not marker.exists()
    assert MESSAGES[-1] == {"role": "user", "content": "Hi"}


@pytest.fixture(scope="module")
def hostile_gguf(demo_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    marker = folder / "pwned"
    source = hostile_templates(marker)["cycler_globals"]
    return copy_gguf(demo_gguf, folder / "hostile.gguf", {"tokenizer.chat_template": source}), marker


def test_hostile_gguf_template_is_refused_by_the_engine(hostile_gguf: tuple[Path, Path]) -> None:
    path, marker = hostile_gguf
    assert read_gguf_template(str(path)).startswith("{{ cycler.__init__")
    events: list[object] = []
    with ChatSession(events.append) as session:
        session.load(path, LoadOptions(n_ctx=256)).result()
        with pytest.raises(TuillmError, match="sandbox|failed"):
            session.reply([{"role": "user", "content": "Hi"}], Sampling(max_tokens=4)).result()
        assert any(isinstance(e, ReplyFailed) for e in events)
        assert not marker.exists()
        # The user's override makes the same file usable.
        session.set_template(CHATML_TEMPLATE).result()
        done = session.reply([{"role": "user", "content": "Hi"}], Sampling(max_tokens=4, temperature=0)).result()
        assert done.stats.generated_tokens > 0
    assert not marker.exists()


def test_gguf_without_template_falls_back_to_chatml_and_says_so(demo_gguf: Path, tmp_path: Path) -> None:
    bare = copy_gguf(demo_gguf, tmp_path / "bare.gguf", {}, remove=("tokenizer.chat_template",))
    assert read_gguf_template(str(bare)) is None
    events: list[object] = []
    with ChatSession(events.append) as session:
        session.load(bare, LoadOptions(n_ctx=256)).result()
        assert session.template is not None and session.template.source == CHATML_TEMPLATE
        assert any("no chat template" in getattr(e, "message", "") for e in events)
        done = session.reply(MESSAGES, Sampling(max_tokens=4, temperature=0)).result()
        assert done.stats.prompt_tokens == session.count_tokens(MESSAGES).result() > 0
