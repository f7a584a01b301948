"""safe_text: no terminal control sequence survives, printable text is kept as it is."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuillm.core.text import safe_line, safe_text

BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}  # embeddings, overrides, isolates
CONTROLS = ({chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))} - {"\n", "\t"}) | BIDI


@pytest.mark.parametrize(("raw", "shown"), [
    ("SmolLM2\x1b]52;c;aGVsbG8=\x07", "SmolLM2"),  # OSC 52: would write the clipboard
    ("\x1b]0;pwned\x1b\\model", "model"),  # OSC 0 ended by ST: would rename the terminal
    ("\x1b[2J\x1b[Hname", "name"),  # CSI: clear the screen, move home
    ("c1\x9b2Jz", "c1z"),  # the 8-bit CSI
    ("tail\x1b]0;never ended", "tail"),  # an unterminated OSC swallows the rest
    ("over\rwrite", "overwrite"),
    ("keeps\tthe\nlayout", "keeps\tthe\nlayout"),
    ("ünïcødé 中文 🙂", "ünïcødé 中文 🙂"),
    ("invoice\u202etxt.exe", "invoicetxt.exe"),  # shown as "invoiceexe.txt" where the terminal does bidi
    ("a\u2067b\u2069c", "abc"),  # an isolate
    ("שלום\u200f!", "שלום\u200f!"),  # a mark only marks: kept
    ("family 👨\u200d👩\u200d👧", "family 👨\u200d👩\u200d👧"),  # zero-width joiners make one emoji: kept
    ("one\u2028two\u2029three", "one\ntwo\nthree"),  # separators: zero cells for the layout, a break to splitlines
])
def test_safe_text(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown


def test_safe_line_is_one_line() -> None:
    assert safe_line("a\nb\tc\x1b[1m\u2028d") == "a b c d"


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_nothing_controlling_survives(text: str) -> None:
    shown = safe_text(text)
    assert not set(shown) & (CONTROLS | {"\u2028", "\u2029"})
    assert safe_text(shown) == shown  # idempotent: shown text is final


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"),
                                     blacklist_characters="".join(BIDI)),
               max_size=200))
def test_printable_text_is_untouched(text: str) -> None:
    assert safe_text(text) == text


def test_a_byte_that_is_not_utf8_is_a_replacement_character() -> None:
    # os.listdir gives b"bad\xff.gguf" as "bad\udcff.gguf"; the terminal's stream would write "\udcff" (6 cells).
    assert safe_line("bad\udcff\udcfename") == "bad\ufffd\ufffdname"
