"""The one read of a client's GBNF that the bounds check and the cost walk share: its counts follow llama.cpp's
tokens, so nothing llama.cpp parses as a group or a repetition is hidden from them."""

from __future__ import annotations

import pytest

from tuillm.core.errors import TuillmError
from tuillm.core.llama.gbnf import read
from tuillm.core.serve.constraint import checked_gbnf


@pytest.mark.parametrize(("text", "depth", "groups"), [
    ('root ::= ("a" ("b")) ("c")', 2, 3),
    ('root ::= "(((" [(] "\\"(" # (((\n', 0, 0),  # in literals, classes and comments: not groups
    ('root ::= ")" ("a")) ) ((("b")))', 3, 4),  # a ")" too many does not lower the depth below 0
    # llama.cpp ends a comment at a "\r" too: what follows it inside a group is parsed, and counted here
    ('root ::= ( "a" # note\r(("b")) )', 3, 3),
])
def test_groups_are_counted_as_llama_cpp_reads_them(text: str, depth: int, groups: int) -> None:
    grammar = read(text)
    assert (grammar.depth, grammar.groups) == (depth, groups)


@pytest.mark.parametrize(("text", "repeats"), [
    ('root ::= "a"{2} "b"{0,5} "c"{3,}', 10),
    ('root ::= "{9}" [{]', 0),  # in a literal or a class: no repetition
    ('root ::= ("a"{ 0 , # up to\n 1999 })', 1999),  # spaces and comments inside the braces, as llama.cpp takes them
    ('root ::= ("a"{0, # }\n 1999})', 1999),  # a "}" in a comment does not end the repetition
    ('root ::= "a"{' + "9" * 5000 + "}", 9999999999),  # an int too long for int(): as many as an int32 holds
])
def test_repetitions_are_counted_as_llama_cpp_reads_them(text: str, repeats: int) -> None:
    assert read(text).repeats == repeats


def test_rules_defined_are_counted() -> None:
    assert read('root ::= a b\na ::= "::="\nb ::= "x"').defined == 3


def test_a_comment_ended_by_a_carriage_return_cannot_hide_nesting() -> None:
    """Groups after a comment that a "\\r" ends, inside a group: llama.cpp recurses on each (20,000 of them took the
    server down); the count ran the comment to the next "\\n" and saw none."""
    text = 'root ::= ( "a" # note\r' + "(" * 300 + '"b"' + ")" * 301
    with pytest.raises(TuillmError, match=r"^grammar: groups nested at most 256 deep, not 301$"):
        checked_gbnf(text)


def test_the_rules_are_read_from_the_same_tokens() -> None:
    rules, root, classes = read('root ::= "ab" x?\nx ::= [0-9]+').rules
    assert len(rules[root]) == 1 and [e[0] for e in rules[root][0]] == ["c", "c", "r"]
    assert ("c", False, ((48, 57),)) in classes


def test_a_literal_class_or_token_left_open_is_one_token_to_the_end() -> None:
    """As llama.cpp reads it; 20,000 "[" were each scanned to the end (seconds, quadratic in the length)."""
    for opened in ("[" * 5000, '"' + "[" * 5000, "<" * 5000, '"a' + "\\" * 5000):
        tokens = read("root ::= " + opened).tokens
        assert [m.group(0) for m in tokens][1:] == [opened]


def test_a_comment_in_braces_is_not_split_every_way() -> None:
    """``{`` then 40 "#" left open: the space pattern does not try the 2^40 ways to split them into comments."""
    assert read('root ::= "a"{' + "#" * 40).repeats == 0


@pytest.mark.parametrize("text", ['root ::= "\\xZZ"', 'root ::= [\\uZZZZ-a]', 'root ::= "\\x4"', 'root ::= "\\U"'])
def test_an_escape_without_its_hex_digits_is_left_to_llama_cpp(text: str) -> None:
    # llama.cpp refuses it as not GBNF (a 400 when the reply starts); the walk does not raise a bare ValueError
    assert checked_gbnf(text) == text
