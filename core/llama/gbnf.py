"""One read of a client's GBNF, shared by the checks made before llama.cpp sees it: the bounds on its size (how deep
its groups nest, how many rules and groups, how many copies its ``{m,n}`` repetitions make; ``core.serve.constraint``)
and the cost walk (``core.llama.grammar_cost``). The text is split into tokens once; the counts come from the tokens,
and the rules, in llama.cpp's shape, are built from the same tokens only when asked (after the bounds passed: the
reader recurses on groups and unrolls repetitions).

The tokens are llama.cpp's (``llama-grammar.cpp``): a comment runs to the end of its line (``\\r`` or ``\\n``), a
literal or a character class to its closing quote or bracket (escapes skipped), ``{m,n}`` may hold spaces and
comments. A character llama.cpp would stop at is skipped here and reading goes on: what follows is counted too, so a
level of nesting cannot be hidden from the count; llama.cpp then refuses the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

MAX_REPEAT_UNROLL = 2000  # past it llama.cpp makes {m,n} an unbounded repetition

Elem = tuple  # ("c", negated, ((low, high), ...)) a character class, or ("r", rule id)
Rules = list[list[list[Elem]]]  # rule id -> alternatives -> elements

# Possessive: no backtracking into a comment or a space (``{`` and 30 "#": 2^30 ways to split them). A literal, class or
# token left open runs to the end, as for llama.cpp (which refuses it): one match, not a scan to the end from each of
# 20,000 "[" (seconds).
_WS = r"(?:[ \t\r\n]++|\#[^\r\n]*+)*+"  # llama.cpp's space, comments included
_TOKEN = re.compile(rf"""\s+|\#[^\r\n]*|(?P<name>[A-Za-z0-9-]+)\s*(?P<def>::=)?|"""
                    rf"""(?P<lit>"(?:\\[\s\S]|[^"\\])*+(?P<lit_end>")?)|"""
                    rf"""(?P<cls>\[(?:\\[\s\S]|[^\]\\])*+(?P<cls_end>\])?)|"""
                    rf"""(?P<rep>\{{{_WS}\d++{_WS}(?:,{_WS}\d*+{_WS})?\}})|(?P<tok>!?<[^>]*+(?P<tok_end>>)?)|"""
                    r"""(?P<op>[()|*+?.])""")
_COMMENT = re.compile(r"#[^\r\n]*")
_ESC = {"t": 9, "r": 13, "n": 10}


class Unreadable(ValueError):
    """Not GBNF this reader follows: llama.cpp's to refuse or take."""


def _count(rep: str) -> list[int]:
    """The numbers of a ``{m,n}`` (a count of more digits than an int32 holds is as many: int() refuses 4,300)."""
    return [int(x[:10]) for x in re.findall(r"\d+", _COMMENT.sub("", rep))]


@dataclass(frozen=True)
class Gbnf:
    """A GBNF text read once: its tokens, and what the bounds check counts of them."""

    text: str
    tokens: tuple[re.Match[str], ...]
    depth: int  # the deepest nesting of "(" groups (a ")" too many does not lower it below 0)
    groups: int  # "(" groups in all
    defined: int  # rules defined ("name ::=")
    repeats: int  # copies made by {m,n} repetitions, the larger bound of each, in all

    @cached_property
    def rules(self) -> tuple[Rules, int, frozenset[Elem]]:
        """The rules in llama.cpp's shape, the root's id and the character classes used; ``Unreadable`` if this
        reader does not follow them. Asked for after the bounds: the reader recurses on each group and unrolls each
        repetition."""
        return _Reader(self.tokens).read()


def read(text: str) -> Gbnf:
    """``text`` split into tokens, with the counts the bounds check takes from them."""
    tokens = tuple(m for m in _TOKEN.finditer(text) if m.lastgroup)
    deepest = depth = groups = defined = repeats = 0
    for m in tokens:
        op = m.group("op")
        if op == "(":
            depth, groups = depth + 1, groups + 1
            deepest = max(deepest, depth)
        elif op == ")":
            depth = max(depth - 1, 0)
        elif m.lastgroup == "rep":
            repeats += max(_count(m.group(0)))
        elif m.group("def"):
            defined += 1
    return Gbnf(text, tokens, deepest, groups, defined, repeats)


def _chars(body: str) -> Iterator[int]:
    if "\\" not in body:
        yield from map(ord, body)
        return
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            kind = body[i + 1]
            width = {"x": 2, "u": 4, "U": 8}.get(kind)
            if width:
                digits = body[i + 2:i + 2 + width]
                if not re.fullmatch(r"[0-9a-fA-F]+", digits):
                    raise Unreadable(f"\\{kind} without its hex digits")  # llama.cpp refuses it
                yield int(digits, 16)
                i += 2 + width
            else:
                yield _ESC.get(kind, ord(kind))
                i += 2
        else:
            yield ord(body[i])
            i += 1


def _class(text: str) -> Elem:
    body, negated = text[1:-1], text.startswith("[^")
    chars = list(_chars(body[1:] if negated else body))
    ranges, i = [], 0
    while i < len(chars):  # a '-' between two characters makes a range (an escaped one cannot be told: rare)
        if i + 2 < len(chars) and chars[i + 1] == ord("-"):
            ranges.append((chars[i], chars[i + 2]))
            i += 3
        else:
            ranges.append((chars[i], chars[i]))
            i += 1
    return ("c", negated, tuple(ranges))


class _Reader:
    """Tokens into llama.cpp's shape: rules of alternatives of elements, a group or a repetition a rule of its own."""

    def __init__(self, tokens: tuple[re.Match[str], ...]) -> None:
        self.tokens = tokens
        self.at = 0
        self.ids: dict[str, int] = {}
        self.rules: dict[int, list[list[Elem]]] = {}
        self.classes: dict[Elem, Elem] = {}  # each class once (a literal's characters: the same few, many times)
        self.chars: dict[int, Elem] = {}  # a literal's character's class

    def rule_id(self, name: str) -> int:
        return self.ids.setdefault(name, len(self.ids))

    def new_rule(self, alternatives: list[list[Elem]]) -> int:
        rid = self.rule_id(f" {len(self.ids)}")
        self.rules[rid] = alternatives
        return rid

    def read(self) -> tuple[Rules, int, frozenset[Elem]]:
        while self.at < len(self.tokens):
            m = self.tokens[self.at]
            if not m.group("def"):
                raise Unreadable(f"expected a rule at {m.group(0)!r}")
            self.at += 1
            self.rules[self.rule_id(m.group("name"))] = self.alternates(top=True)
        if "root" not in self.ids or set(self.ids.values()) - set(self.rules):
            raise Unreadable("no root rule or an undefined rule")
        return [self.rules[i] for i in range(len(self.ids))], self.ids["root"], frozenset(self.classes)

    def alternates(self, top: bool) -> list[list[Elem]]:
        alternatives = [self.sequence()]
        while self.at < len(self.tokens) and self.tokens[self.at].group("op") == "|":
            self.at += 1
            alternatives.append(self.sequence())
        if not top:
            if self.at >= len(self.tokens) or self.tokens[self.at].group("op") != ")":
                raise Unreadable("a group not closed")
            self.at += 1
        return alternatives

    def sequence(self) -> list[Elem]:
        seq: list[Elem] = []
        last: list[Elem] = []
        while self.at < len(self.tokens):
            m = self.tokens[self.at]
            op, kind = m.group("op"), m.lastgroup
            if m.group("def") or op in ("|", ")"):
                break
            self.at += 1
            if kind == "rep" or op in ("*", "+", "?"):
                if not last:
                    raise Unreadable("a repetition of nothing")
                del seq[len(seq) - len(last):]
                last = self.repeated(last, m.group(0))
                seq += last
                continue
            # a group here, not in item(): two frames a level of nesting, not three
            last = [("r", self.new_rule(self.alternates(top=False)))] if op == "(" else self.item(m)
            seq += last
        return seq

    def item(self, m: re.Match[str]) -> list[Elem]:
        if m.lastgroup == "name":
            return [("r", self.rule_id(m.group("name")))]
        if m.lastgroup in ("lit", "cls", "tok") and m.group(f"{m.lastgroup}_end") is None:
            raise Unreadable(f"{m.group(0)[:20]!r}... not closed")
        if m.lastgroup == "lit":
            chars = self.chars
            for c in _chars(m.group(0)[1:-1]):
                if c not in chars:
                    chars[c] = self.cls(("c", False, ((c, c),)))
            return [chars[c] for c in _chars(m.group(0)[1:-1])]
        if m.lastgroup == "cls":
            return [self.cls(_class(m.group(0)))]
        if m.lastgroup == "tok":
            return [self.cls(("c", False, ((-1, -1),)))]  # a token: a character of its own
        return [self.cls(("c", True, ()))]  # "."

    def cls(self, elem: Elem) -> Elem:
        return self.classes.setdefault(elem, elem)

    def repeated(self, item: list[Elem], op: str) -> list[Elem]:
        if op in "*+?":
            low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[op]
        else:
            numbers = _count(op)
            low = numbers[0]
            high = low if "," not in _COMMENT.sub("", op) else (numbers[1] if len(numbers) > 1 else None)
        if high is not None and high > MAX_REPEAT_UNROLL:
            high = None
        out = item * low
        if high is None:
            rid = self.rule_id(f" {len(self.ids)}")
            self.rules[rid] = [item + [("r", rid)], []]
            return out + [("r", rid)]
        nxt: list[Elem] = []
        for _ in range(high - low):  # S'(k) ::= S S'(k-1) |
            nxt = [("r", self.new_rule([item + nxt, []]))]
        return out + nxt
