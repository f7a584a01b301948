"""What one sampled token costs llama.cpp's grammar sampler, worked out from the GBNF before llama.cpp sees it.

llama.cpp keeps a set of parse stacks; for each token it checks every vocabulary entry against every stack, and a
token whose first character some stack takes is followed down character by character, into every stack that
character can lead to, with no sharing between the branches. A grammar where one character can be taken in many
ways (``e{0,64}`` with ``e ::= "a"?``: which of the 64 copies took each ``a`` of a 16-``a`` token) makes that a
tree of millions of branches for one token: 3.6 s per token from a 27-character grammar, beyond any stop flag
(the engine checks it between tokens). An unambiguous grammar (JSON, a schema's) follows about one branch.

A walk follows one token of up to ``TOKEN_CHARS`` characters as llama.cpp does and counts its branches, on one
representative of each class of characters the grammar tells apart (an upper bound: the worst character at each
step, for each stack apart). The grammar is walked from its start and from the states a few characters lead to, and
from every part of it: the start of each rule, and each place in an alternative where a rule (a group, a
repetition) is taken up, with the rest of that alternative above nothing. Branches only begin where a rule is taken
up (the characters of a literal are one branch each), so every place one can begin has a walk of its own, which
follows all the rules taken up from there. Each walk has its own budget of moves (``MAX_STEPS``): a large part (a
1,000-word enum) is judged on what its walk counted, and can neither use up the walk of an ambiguous part placed
after it (``root ::= enum e{0,1024}``) nor, with a long start (a 100-character literal), keep one out of reach. A
grammar is as costly as its costliest walk. The walks together are bounded (``MAX_WORK``, about a second for a
grammar of 1 MB): past it the grammar is refused as too large to judge, not judged on part of it.

Not followed: a part's branches multiplied by those of the rule it returns into, where that is further from the
start than the walks from the start reach (``root ::= x e{0,8}`` with ``x ::= "b"{100} e{0,8}``: 502 branches
each, 131,054 together after the 100 b's). Walking each part above every rule it can return into (each choice of
caller a world of its own, the worst world counted) finds it, at several times the moves: c.gbnf went past
``MAX_WORK``. A grammar ``core.llama.gbnf`` cannot read is left to llama.cpp, which refuses it.
"""

from __future__ import annotations

from collections.abc import Iterator

from tuillm.core.errors import TuillmError
from tuillm.core.llama.gbnf import Elem, Gbnf, Rules, Unreadable, read

TOKEN_CHARS = 16  # characters of one token followed (longer tokens are few: 3,148 of 49,152 from 12 on)
MAX_STATES = 32  # states near the start the walk begins from (each a set of stacks, nearest the start first)
MAX_STACKS = 1024  # stacks llama.cpp would hold at once: past it, the grammar is too costly at any rate
MAX_STEPS = 50_000  # moves of one stack by one character one walk makes: past it, that walk is judged on its count
MAX_WORK = 400_000  # moves all the walks make together (about a second): past it, the grammar is refused
MAX_DEPTH = 64  # frames of a stack walked (json.gbnf: 9): a deeper one (a chain of rules, each taken first) is left out

Stack = tuple  # of positions (rule, alternative, index), the top last


class TooCostly(ValueError):
    """More stacks at once than a grammar llama.cpp samples with quickly."""


class TooLarge(ValueError):
    """More walking than ``MAX_WORK`` to judge the grammar."""


class _PastCap(Exception):
    """One character makes more branches than are left to the bound: the walk is past it."""


class _WalkedEnough(Exception):
    """One walk made ``MAX_STEPS`` moves: the part it started from (a 300-word enum: 0.1 s a token) is judged on the
    branches counted by then, not refused for its size. Every other part has a walk of its own."""


def _matches(elem: Elem, c: int) -> bool:
    return any(lo <= c <= hi for lo, hi in elem[2]) != elem[1]


class _Walk:
    def __init__(self, rules: Rules, root: int, classes: frozenset[Elem]) -> None:
        self.rules = rules
        bounds = {0x20, 0x61, -1}
        for e in classes:
            bounds.update(x for lo, hi in e[2] for x in (lo, hi + 1))
        self.alphabet = sorted(b for b in bounds if b >= -1)  # one character of each class the grammar tells apart
        self.after: dict[Stack, tuple[Stack, ...]] = {}  # shared by the walks: it depends on the stack only
        self.taken: dict[Elem, tuple[int, ...]] = {}
        self.moves = self.work = 0  # moves of this walk, of all the walks
        self.start = self.entered(root)

    def count(self, moves: int) -> None:
        self.moves += moves
        self.work += moves
        if self.work > MAX_WORK:
            raise TooLarge(f"more than {MAX_WORK} moves to follow its parts")

    def advance(self, stack: Stack) -> set[Stack]:
        """The stacks ``stack`` leads to whose top is a character class (or that are empty), as llama.cpp's; one
        deeper than ``MAX_DEPTH`` frames is left out (its rule's part has a walk of its own)."""
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
            elem = self.rules[rule][alt][i]
            if elem[0] == "c":
                out.add(cur)
                continue
            if len(cur) >= MAX_DEPTH:
                continue
            below = cur[:-1] + (((rule, alt, i + 1),) if i + 1 < len(self.rules[rule][alt]) else ())
            for a, body in enumerate(self.rules[elem[1]]):
                todo.append(below + (((elem[1], a, 0),) if body else ()))
            if len(out) > MAX_STACKS:
                raise TooCostly(f"more than {MAX_STACKS} parse stacks at once")
        self.count(len(seen) + sum(map(len, seen)) // 16)  # (a frame copied: a sixteenth of a move)
        return out

    def entered(self, rule: int, below: Stack = ()) -> frozenset[Stack]:
        """The stacks taking up ``rule`` above ``below`` leads to."""
        return frozenset(s for a, body in enumerate(self.rules[rule])
                         for s in self.advance(below + (((rule, a, 0),) if body else ())))

    def takes(self, elem: Elem) -> tuple[int, ...]:
        """The characters of the alphabet character class ``elem`` takes."""
        if elem not in self.taken:
            self.taken[elem] = tuple(c for c in self.alphabet if _matches(elem, c))
        return self.taken[elem]

    def step(self, stack: Stack) -> tuple[Stack, ...]:
        """The stacks after ``stack``'s top took a character (any it takes: they lead to the same)."""
        rule, alt, i = stack[-1]
        body = self.rules[rule][alt]
        if i + 1 < len(body) and body[i + 1][0] == "c":  # (most often: the next character of a literal)
            return (stack[:-1] + ((rule, alt, i + 1),),)
        if stack not in self.after:
            self.after[stack] = tuple(self.advance(stack[:-1] + (((rule, alt, i + 1),) if i + 1 < len(body) else ())))
        return self.after[stack]

    def spread(self, counts: dict[Stack, int], room: float = float("inf")) -> list[dict[Stack, int]]:
        """For each character some stack takes, the stacks after it, each with the number of branches that reach it
        (llama.cpp follows each on its own); characters the same stacks take lead to the same, counted once.
        ``_PastCap`` as soon as one character makes more than ``room`` branches."""
        stacks = [stack for stack in counts if stack]
        takers: dict[int, int] = {}  # character -> the stacks that take it, one bit each
        moves = 0
        for j, stack in enumerate(stacks):
            rule, alt, i = stack[-1]
            chars = self.takes(self.rules[rule][alt][i])
            moves += len(chars) // 16  # (a look-up: a sixteenth of a move)
            for c in chars:
                takers[c] = takers.get(c, 0) | 1 << j
        out = []
        for group in set(takers.values()):
            reached: dict[Stack, int] = {}
            made = 0
            while group:
                low = group & -group
                group ^= low
                stack = stacks[low.bit_length() - 1]
                count = counts[stack]
                following = self.step(stack)
                for nxt in following:
                    reached[nxt] = reached.get(nxt, 0) + count
                moves += 1
                made += count * len(following)
                if made > room:  # (e{0,1024} of "a"?: each "a" leads down a chain of 1,024 rules)
                    raise _PastCap()
            out.append(reached)
        self.count(moves)
        if self.moves > MAX_STEPS:
            raise _WalkedEnough()
        return out

    def branches(self, state: frozenset[Stack], cap: int) -> int:
        """The branches one token follows from ``state``, down the characters that make the most (a greedy walk
        of ``TOKEN_CHARS`` characters; it stops past ``cap``)."""
        counts, self.total = dict.fromkeys(state, 1), 0
        for _ in range(TOKEN_CHARS):
            try:
                counts = max(self.spread(counts, cap - self.total), key=lambda r: sum(r.values()), default={})
            except _PastCap:
                self.total = cap + 1
                break
            if len(counts) > MAX_STACKS:  # (stacks that double with each character: "a" x "b" | "a" x "c")
                raise TooCostly(f"more than {MAX_STACKS} parse stacks at once")
            self.total += sum(counts.values())
            if not counts or self.total > cap:
                break
        return self.total

    def near_start(self, cap: int) -> int:
        """The most branches from the start or a state a few characters lead to (one budget for them all)."""
        worst, states, todo, seen = 0, 0, [self.start], {self.start}
        self.moves = 0
        try:
            while todo and states < MAX_STATES:
                state = todo.pop(0)
                states += 1
                worst = max(worst, self.branches(state, cap))
                if worst > cap:
                    return worst
                for reached in self.spread(dict.fromkeys(state, 1)):
                    nxt = frozenset(reached)
                    if nxt and nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
        except _WalkedEnough:
            worst = max(worst, self.total)
        return worst

    def parts(self) -> Iterator[frozenset[Stack]]:
        """Where each part starts: each rule's start, and each place in an alternative where a rule is taken up
        (a place with a character first is no worse than the next such place: the characters before it are one
        branch each), the rest of the rule above nothing."""
        seen: set[frozenset[Stack]] = {self.start}
        for rule, alternatives in enumerate(self.rules):
            starts = [self.entered(rule)]
            starts += [frozenset(self.advance(((rule, a, i),))) for a, body in enumerate(alternatives)
                       for i in range(1, len(body)) if body[i][0] == "r"]
            for state in starts:
                if state not in seen:
                    seen.add(state)
                    yield state

    def judged(self, state: frozenset[Stack], cap: int) -> int:
        """The branches from ``state``, on a budget of its own."""
        self.moves = 0
        try:
            return self.branches(state, cap)
        except _WalkedEnough:
            return self.total


def token_branches(grammar: str | Gbnf, cap: int) -> int:
    """The most branches one token follows in llama.cpp's grammar sampler, from the start or a state a few
    characters lead to, or from any part of the grammar (past ``cap`` counting stops). ``Unreadable`` if the GBNF
    is not read; ``TooLarge`` if the walks together would take too long."""
    walk = _Walk(*(read(grammar) if isinstance(grammar, str) else grammar).rules)
    worst = walk.near_start(cap)
    for state in walk.parts():
        if worst > cap:
            break
        worst = max(worst, walk.judged(state, cap))
    return worst


MAX_TOKEN_BRANCHES = 32_768  # llama.cpp's grammars/ examples: at most 8,925 (json.gbnf); e{0,16} of "a"?: 131,054


def check_cost(grammar: str | Gbnf) -> None:
    """A ``TuillmError`` naming the bound if sampling with GBNF ``grammar`` (its text, or its text read) would follow
    too many branches a token."""
    try:
        branches = token_branches(grammar, MAX_TOKEN_BRANCHES)
    except Unreadable:
        return
    except TooCostly as exc:
        raise TuillmError(f"grammar: too ambiguous for llama.cpp's sampler ({exc})") from None
    except TooLarge as exc:
        raise TuillmError(f"grammar: too large to judge what it costs llama.cpp's sampler ({exc})") from None
    if branches > MAX_TOKEN_BRANCHES:
        raise TuillmError(f"grammar: too ambiguous for llama.cpp's sampler (more than {MAX_TOKEN_BRANCHES} parse "
                          "branches for one token: a character matched in many ways, as by a repeated optional)")
