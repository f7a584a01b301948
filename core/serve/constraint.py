"""What a request's reply must follow: llama-server's ``grammar`` (GBNF) or ``json_schema``, or OpenAI's
``response_format`` (JSON, or JSON of a schema); one of them, as llama-server takes one.

A client's GBNF reaches llama.cpp's grammar parser, which recurses on each group and follows a rule's first
reference down the rules without a depth limit: 20,000 nested parentheses (40 KB) overflowed the stack and took the
server down. And it expands ``x{m,n}`` into that many copies, each a place to match: 50 of ``e{0,1999}`` (520
characters) held the model's thread for 15 s on the first token, beyond a client's disconnect. Its size, nesting,
rules and repetitions are bounded here, before llama.cpp sees it, counted on the tokens llama.cpp reads
(``core.llama.gbnf``: a comment ends at a ``\r`` as well as a ``\n``, so groups after a ``\r`` are counted); what
llama.cpp then refuses is a 400 when the reply starts (``LlamaModel.generate``).

Within those bounds a grammar can still be ambiguous, which is what costs at sampling time: llama.cpp follows every
way a token's characters can be matched, unshared, inside one uninterruptible sampling call (``e{0,16}`` with
``e ::= "a"?``, 27 characters: 3.6 s for the first token, up to 1.1 s for later ones; ``e{0,128}``: minutes).
``core.llama.grammar_cost`` counts those branches for a token, from the start and from every part of the grammar on
a budget of its own (a large part cannot hide an ambiguous one after it), and refuses past ``MAX_TOKEN_BRANCHES``
(json.gbnf: 8,925), or more than ``MAX_STACKS`` parse stacks at once. A JSON schema's grammar passes the same check.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuillm.core.errors import TuillmError
from tuillm.core.llama.gbnf import read
from tuillm.core.llama.grammar import MAX_GRAMMAR_CHARS, json_grammar
from tuillm.core.llama.grammar_cost import check_cost

# Far past a grammar written by hand, far below what overflowed an 8 MB thread stack: 10,000 to 20,000 nested
# groups, 60,000 to 80,000 rules each starting with the next. A group is a rule of llama.cpp's own, so they count.
MAX_GRAMMAR_NESTING = 256
MAX_GRAMMAR_RULES = 8192
MAX_GRAMMAR_REPEATS = 1024  # copies made of {m,n} repetitions in all (a 2,000-character string is {0,2000})


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)  # as the requests that hold it (core.serve.openai)


class JsonSchema(_In):
    name: str = "response"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class ResponseFormat(_In):
    """OpenAI's ``response_format``."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchema | None = None

    def grammar(self) -> str | None:
        if self.type == "text":
            return None
        if self.type == "json_schema":
            if self.json_schema is None or self.json_schema.schema_ is None:
                raise TuillmError("response_format json_schema needs json_schema.schema")
            return json_grammar(self.json_schema.schema_)
        return json_grammar()


def reply_grammar(grammar: str | None, json_schema: dict[str, Any] | None,
                  response_format: ResponseFormat | None = None) -> str | None:
    """The GBNF the reply follows, or None. Two ways at once are refused: neither would win."""
    if grammar == "":  # llama-server's "no grammar"
        grammar = None
    asks_json = response_format is not None and response_format.type != "text"
    given = [name for name, value in (("grammar", grammar), ("json_schema", json_schema),
                                      ("response_format", response_format if asks_json else None))
             if value is not None]
    if len(given) > 1:
        raise TuillmError(f"{' and '.join(given)}: give one way to constrain the reply")
    if json_schema is not None:
        return json_grammar(json_schema)
    if grammar is not None:
        return checked_gbnf(grammar)
    return response_format.grammar() if response_format is not None else None


def checked_gbnf(text: str) -> str:
    """``text`` if its size, nesting, rule count and repetitions are within what llama.cpp's parser survives, and
    its cost a token within what its sampler does quickly; else a ``TuillmError`` naming the bound. The text is
    read once (``core.llama.gbnf``) for both checks. Whether it is GBNF at all is llama.cpp's to say."""
    if len(text) > MAX_GRAMMAR_CHARS:
        raise TuillmError(f"grammar: at most {MAX_GRAMMAR_CHARS} characters, not {len(text)}")
    grammar = read(text)
    if grammar.depth > MAX_GRAMMAR_NESTING:
        raise TuillmError(f"grammar: groups nested at most {MAX_GRAMMAR_NESTING} deep, not {grammar.depth}")
    rules = grammar.defined + grammar.groups  # the rules defined and llama.cpp's own, one a group
    if rules > MAX_GRAMMAR_RULES:
        raise TuillmError(f"grammar: at most {MAX_GRAMMAR_RULES} rules and groups, not {rules}")
    if grammar.repeats > MAX_GRAMMAR_REPEATS:
        raise TuillmError(f"grammar: {{m,n}} repetitions of at most {MAX_GRAMMAR_REPEATS} copies in all, not "
                          f"{grammar.repeats}")
    check_cost(grammar)
    return text
