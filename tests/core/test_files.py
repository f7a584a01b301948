"""A path holding a NUL (pasted into a field, or a settings string's ``\\u0000``) is refused in words where it
enters core: os.stat and open raised ValueError ("embedded null byte"), which reached the user as a crash report."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuillm.core.conversion.plan import open_source
from tuillm.core.errors import TuillmError
from tuillm.core.files import NUL_PATH, FileRefused, input_problem, named_path, read_bounded
from tuillm.core.models.catalog import resolve_model
from tuillm.core.settings import Config


def test_a_path_with_a_nul_is_refused_in_words(tmp_path: Path) -> None:
    real = tmp_path / "model.gguf"
    real.write_bytes(b"GGUF")
    text = f"{real}\x00.txt"  # the part before the NUL exists: nothing may look it up instead
    assert input_problem(Path(text)) == NUL_PATH
    with pytest.raises(TuillmError, match=r"^output folder: not a path \(it holds a NUL character\)$"):
        named_path(text, "output folder")
    with pytest.raises(FileRefused, match=r"^notes: not a path \(it holds a NUL character\)$"):
        read_bounded(text, 1 << 10, shown="notes", limit_of="an attachment")
    for call in (lambda: resolve_model(text, Config(model_dirs=[tmp_path])), lambda: open_source(Path(text))):
        with pytest.raises(TuillmError) as caught:
            call()
        assert str(caught.value).endswith(NUL_PATH)  # (the front ends show it through safe_line)
