"""Grammars that constrain a reply, as GBNF text for ``Sampling.grammar``: JSON, or JSON that follows a schema
(the server's ``response_format`` / Ollama's ``format``). llama-cpp-python's converter writes them."""

from __future__ import annotations

import json
import re
from typing import Any

from tuillm.core.errors import TuillmError
from tuillm.core.llama.grammar_cost import check_cost

MAX_GRAMMAR_CHARS = 1 << 20  # a schema whose grammar grows past this is refused, not handed to llama.cpp
_EMPTY_RULE = re.compile(r"^([\w-]+) ::=[ \t]*$", re.MULTILINE)  # a rule that matches nothing


def json_grammar(schema: dict[str, Any] | None = None) -> str:
    """GBNF for any JSON value (``schema`` None) or for JSON that validates against ``schema``; a schema the
    converter does not take is a ``TuillmError`` with its reason."""
    from llama_cpp import llama_grammar

    if schema is None:
        return llama_grammar.JSON_GBNF
    try:
        _check_refs(schema)
        text = llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    except (ValueError, KeyError, TypeError, RecursionError, AssertionError, NotImplementedError) as exc:
        raise TuillmError(f"the JSON schema cannot be turned into a grammar ({exc})") from None
    if len(text) > MAX_GRAMMAR_CHARS:
        raise TuillmError("the JSON schema makes a grammar too large")
    empty = _EMPTY_RULE.search(text)
    if empty:  # llama.cpp refuses it (printing the grammar on stderr); before it checked, it crashed on one
        raise TuillmError(f"the JSON schema allows no value at all ({empty.group(1)}: an empty enum, type list or "
                          "the like)")
    check_cost(text)
    return text


def _check_refs(node: Any) -> None:
    """Only refs inside the schema (``#/...``): the converter would fetch an ``https://`` one from the network."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref is not None and (not isinstance(ref, str) or not ref.startswith("#")):
            raise TuillmError(f"the JSON schema's $ref {str(ref)[:80]!r} is not inside the schema (only '#/...' "
                              "refs are followed)")
        for value in node.values():
            _check_refs(value)
    elif isinstance(node, list):
        for value in node:
            _check_refs(value)
