"""What one sampled token costs llama.cpp's grammar sampler, worked out from the GBNF before llama.cpp sees it.

llama.cpp keeps a set of parse stacks; for each token it checks every vocabulary entry against every stack, and a
token whose first character some stack takes is followed down character by character, into every stack that
character can lead to, with no sharing between the branches. A grammar where one character can be taken in many
ways (``e{0,64}`` with ``e ::= "a"?``: which of the 64 copies took each ``a`` of a 16-``a`` token) makes that a
tree of millions of branches for one token: 3.6 s per token from a 27-character grammar, beyond any stop flag
(the engine checks it between tokens). An unambiguous grammar (JSON, a schema's) follows about one branch.

``branches`` walks the grammar as llama.cpp does, from its start and from the states a few characters lead to, and
counts the branches one token of up to ``TOKEN_CHARS`` characters can take, on one representative of each class of
characters the grammar tells apart. It is an upper bound (the worst character at each step, for each stack apart).
A grammar it cannot read is left to llama.cpp, which refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tuillm.core.errors import TuillmError

TOKEN_CHARS = 16  # characters of one token followed (longer tokens are few: 3,148 of 49,152 from 12 on)
MAX_STATES = 32  # states the walk starts from (each a set of stacks, nearest the start first)
MAX_STACKS = 1024  # stacks llama.cpp would hold at once: past it, the grammar is too costly at any rate
MAX_STEPS = 100_000  # moves of one stack by one character the walk makes: past it, judged on what it counted
MAX_REPEAT_UNROLL = 2000  # past it llama.cpp makes {m,n} an unbounded repetition

Elem = tuple  # ("c", negated, ((low, high), ...)) a character class, or ("r", rule id)
Stack = tuple  # of positions (rule, alternative, index), the top last

_TOKEN = re.compile(r"""\s+|\#[^\n]*|(?P<name>[A-Za-z0-9-]+)\s*(?P<def>::=)?|(?P<lit>"(?:\\.|[^"\\])*")|"""
                    r"""(?P<cls>\[(?:\\.|[^\]\\])*\])|(?P<rep>\{\s*\d+\s*(?:,\s*\d*\s*)?\})|(?P<tok>!?<[^>]*>)|"""
                    r"""(?P<op>[()|*+?.])""")
_ESC = {"t": 9, "r": 13, "n": 10}


class Unreadable(ValueError):
    """Not GBNF this reader follows: llama.cpp's to refuse or take."""


class TooCostly(ValueError):
    """More stacks at once than a grammar llama.cpp samples with quickly."""


class _WalkedEnough(Exception):
    """The walk made ``MAX_STEPS`` moves: a large grammar (a 300-word enum: 0.1 s a token) is judged on the branches
    counted by then, not refused for its size."""


def _chars(body: str) -> Iterator[int]:
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            kind = body[i + 1]
            width = {"x": 2, "u": 4, "U": 8}.get(kind)
            if width:
                yield int(body[i + 2:i + 2 + width] or "0", 16)
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
    """GBNF into llama.cpp's shape: rules of alternatives of elements, a group or a repetition a rule of its own."""

    def __init__(self, text: str) -> None:
        self.tokens = [m for m in _TOKEN.finditer(text) if m.lastgroup]
        self.at = 0
        self.ids: dict[str, int] = {}
        self.rules: dict[int, list[list[Elem]]] = {}

    def rule_id(self, name: str) -> int:
        return self.ids.setdefault(name, len(self.ids))

    def new_rule(self, alternatives: list[list[Elem]]) -> int:
        rid = self.rule_id(f" {len(self.ids)}")
        self.rules[rid] = alternatives
        return rid

    def read(self) -> tuple[list[list[list[Elem]]], int]:
        while self.at < len(self.tokens):
            m = self.tokens[self.at]
            if not m.group("def"):
                raise Unreadable(f"expected a rule at {m.group(0)!r}")
            self.at += 1
            self.rules[self.rule_id(m.group("name"))] = self.alternates(top=True)
        if "root" not in self.ids or set(self.ids.values()) - set(self.rules):
            raise Unreadable("no root rule or an undefined rule")
        return [self.rules[i] for i in range(len(self.ids))], self.ids["root"]

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
            last = self.item(m)
            seq += last
        return seq

    def item(self, m: re.Match[str]) -> list[Elem]:
        if m.lastgroup == "name":
            return [("r", self.rule_id(m.group("name")))]
        if m.lastgroup == "lit":
            return [("c", False, ((c, c),)) for c in _chars(m.group(0)[1:-1])]
        if m.lastgroup == "cls":
            return [_class(m.group(0))]
        if m.lastgroup == "tok":
            return [("c", False, ((-1, -1),))]  # a token: a character of its own
        if m.group("op") == ".":
            return [("c", True, ())]
        return [("r", self.new_rule(self.alternates(top=False)))]  # "("

    def repeated(self, item: list[Elem], op: str) -> list[Elem]:
        if op in "*+?":
            low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[op]
        else:
            numbers = [int(x[:10]) for x in re.findall(r"\d+", op)]
            low = numbers[0]
            high = low if "," not in op else (numbers[1] if len(numbers) > 1 else None)
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


def _advance(rules: list[list[list[Elem]]], stack: Stack) -> set[Stack]:
    """The stacks ``stack`` leads to whose top is a character class (or that are empty), as llama.cpp's."""
    out: set[Stack] = set()
    todo, seen = [stack], set()
    while todo:
        cur = todo.pop()
        if cur in seen:
            continue
        seen.add(cur)
        if not cur:
            out.add(cur)
            continue
        rule, alt, i = cur[-1]
        elem = rules[rule][alt][i]
        if elem[0] == "c":
            out.add(cur)
            continue
        below = cur[:-1] + (((rule, alt, i + 1),) if i + 1 < len(rules[rule][alt]) else ())
        for a, body in enumerate(rules[elem[1]]):
            todo.append(below + (((elem[1], a, 0),) if body else ()))
        if len(out) > MAX_STACKS:
            raise TooCostly(f"more than {MAX_STACKS} parse stacks at once")
    return out


def _matches(elem: Elem, c: int) -> bool:
    return any(lo <= c <= hi for lo, hi in elem[2]) != elem[1]


class _Walk:
    def __init__(self, rules: list[list[list[Elem]]], root: int) -> None:
        self.rules = rules
        bounds = {0x20, 0x61, -1}
        for alternatives in rules:
            for body in alternatives:
                for e in body:
                    if e[0] == "c":
                        bounds.update(x for lo, hi in e[2] for x in (lo, hi + 1))
        self.alphabet = sorted(b for b in bounds if b >= -1)  # one character of each class the grammar tells apart
        self.start = frozenset(s for a, body in enumerate(rules[root])
                               for s in _advance(rules, ((root, a, 0),) if body else ()))
        self.after: dict[tuple[Stack, int], set[Stack]] = {}

    def step(self, stack: Stack, c: int) -> set[Stack]:
        key = (stack, c)
        if key not in self.after:
            if len(self.after) >= MAX_STEPS:
                raise _WalkedEnough()
            out: set[Stack] = set()
            if stack:
                rule, alt, i = stack[-1]
                if _matches(self.rules[rule][alt][i], c):
                    body = self.rules[rule][alt]
                    out = _advance(self.rules, stack[:-1] + (((rule, alt, i + 1),) if i + 1 < len(body) else ()))
            self.after[key] = out
        return self.after[key]

    def moved(self, counts: dict[Stack, int], c: int) -> dict[Stack, int]:
        """The stacks after character ``c``, each with the number of branches that reach it (llama.cpp follows
        each on its own)."""
        reached: dict[Stack, int] = {}
        for stack, count in counts.items():
            for nxt in self.step(stack, c):
                reached[nxt] = reached.get(nxt, 0) + count
        return reached

    def branches(self, state: frozenset[Stack], cap: int) -> int:
        """The branches one token follows from ``state``, down the characters that make the most (a greedy walk
        of ``TOKEN_CHARS`` characters; it stops past ``cap``)."""
        counts, total = dict.fromkeys(state, 1), 0
        for _ in range(TOKEN_CHARS):
            counts = max((self.moved(counts, c) for c in self.alphabet), key=lambda r: sum(r.values()))
            if len(counts) > MAX_STACKS:  # (stacks that double with each character: "a" x "b" | "a" x "c")
                raise TooCostly(f"more than {MAX_STACKS} parse stacks at once")
            total += sum(counts.values())
            if not counts or total > cap:
                break
        return total


def token_branches(text: str, cap: int) -> int:
    """The most branches one token follows in llama.cpp's grammar sampler, from the start or from a state a few
    characters lead to (past ``cap`` counting stops). ``Unreadable`` if the GBNF is not read."""
    walk = _Walk(*_Reader(text).read())
    worst, states, todo, seen = 0, 0, [walk.start], {walk.start}
    try:
        while todo and states < MAX_STATES:
            state = todo.pop(0)
            states += 1
            worst = max(worst, walk.branches(state, cap))
            if worst > cap:
                return worst
            for c in walk.alphabet:
                nxt = frozenset(n for s in state for n in walk.step(s, c))
                if nxt and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
    except _WalkedEnough:
        pass
    return worst


MAX_TOKEN_BRANCHES = 32_768  # llama.cpp's grammars/ examples: at most 8,925 (json.gbnf); e{0,16} of "a"?: 131,054


def check_cost(text: str) -> None:
    """A ``TuillmError`` naming the bound if sampling with GBNF ``text`` would follow too many branches a token."""
    try:
        branches = token_branches(text, MAX_TOKEN_BRANCHES)
    except Unreadable:
        return
    except TooCostly as exc:
        raise TuillmError(f"grammar: too ambiguous for llama.cpp's sampler ({exc})") from None
    if branches > MAX_TOKEN_BRANCHES:
        raise TuillmError(f"grammar: too ambiguous for llama.cpp's sampler (more than {MAX_TOKEN_BRANCHES} parse "
                          "branches for one token: a character matched in many ways, as by a repeated optional)")
