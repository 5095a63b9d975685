"""Validate a user's filter before it reaches Lance.

A filter is a SQL boolean expression in the language LanceDB users know (``label = 3 AND split =
'train'``). It is tokenised and parsed here with a small Pratt parser, every column it names is
checked against the table's schema, and the whole expression must be boolean. Only then is the
text handed to Lance. Lance's own parser silently ignores what follows a ``;`` (``1=1; DROP ...``
filters as ``1=1``), so validating first is what makes "it can never run anything but a filter"
true, and it turns mistakes into 400s that name the problem. Quoting follows Lance: backticks quote a
column name (`` `my col` ``), double quotes make a string, and ``--``/``/*`` comments are refused.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from app.errors import BadRequest

if TYPE_CHECKING:
    from app.store.snapshot import Snapshot

MAX_LENGTH = 16_384
MAX_DEPTH = 64
# Lance's virtual columns that filters may use.
META_COLUMNS = {"_rowid", "_rowaddr", "_rowoffset", "_row_created_at_version", "_row_last_updated_at_version"}

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
    | (?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")
    | (?P<qid>`[^`]+`)
    | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op><>|!=|<=|>=|\|\||[=<>+\-*/%(),.\[\]])
    )""",
    re.VERBOSE,
)
KEYWORDS = {"AND", "OR", "NOT", "IN", "BETWEEN", "LIKE", "ILIKE", "IS", "NULL", "TRUE", "FALSE", "CAST", "AS",
            "TIMESTAMP", "DATE"}
COMPARE = {"=", "!=", "<>", "<", "<=", ">", ">="}
ARITH = {"+", "-", "*", "/", "%", "||"}
BOOL_FUNCS = {"array_has", "array_has_any", "array_has_all", "array_contains", "regexp_match", "regexp_like",
              "starts_with", "ends_with", "contains", "contains_tokens", "isnan", "isinf"}


class InvalidFilter(BadRequest):
    code = "invalid_filter"


@dataclass(frozen=True)
class Token:
    kind: str  # num, str, id, kw, op, end
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            where = len(text) - len(text[pos:].lstrip())
            raise InvalidFilter(f"unexpected character {text[where]!r} at position {where}", position=where)
        kind = match.lastgroup or "op"
        value = match.group(kind)
        start = match.start(kind)
        if kind == "op" and text.startswith(("--", "/*"), start):
            raise InvalidFilter(f"comments are not allowed in a filter (position {start})", position=start)
        if kind == "id" and value.upper() in KEYWORDS:
            tokens.append(Token("kw", value.upper(), start))
        elif kind == "qid":
            tokens.append(Token("id", value[1:-1], start))
        else:
            tokens.append(Token(kind, value, start))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    """Pratt parser; each parse method returns the kind of value the expression yields."""

    def __init__(self, tokens: list[Token], schema: pa.Schema) -> None:
        self.tokens, self.schema, self.i, self.depth = tokens, schema, 0, 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, kind: str, text: str | None = None) -> Token:
        tok = self.tok
        if tok.kind != kind or (text is not None and tok.text != text):
            want = text or kind
            got = tok.text or "end of filter"
            raise InvalidFilter(f"expected {want!r} at position {tok.pos}, found {got!r}", position=tok.pos)
        return self.take()

    def at(self, kind: str, *texts: str) -> bool:
        return self.tok.kind == kind and (not texts or self.tok.text in texts)

    # precedence climbing: OR < AND < NOT < comparison/predicates < additive < multiplicative < unary
    def parse_or(self) -> str:
        kind = self.parse_and()
        while self.at("kw", "OR"):
            self.take()
            self._need_bool(kind, "OR")
            self._need_bool(self.parse_and(), "OR")
            kind = "bool"
        return kind

    def parse_and(self) -> str:
        kind = self.parse_not()
        while self.at("kw", "AND"):
            self.take()
            self._need_bool(kind, "AND")
            self._need_bool(self.parse_not(), "AND")
            kind = "bool"
        return kind

    def parse_not(self) -> str:
        negations = 0
        while self.at("kw", "NOT"):  # a loop, not recursion: NOT NOT ... NOT x cannot exhaust the stack
            self.take()
            negations += 1
        kind = self.parse_predicate()
        if negations:
            self._need_bool(kind, "NOT")
            return "bool"
        return kind

    def parse_predicate(self) -> str:
        kind = self.parse_additive()
        if self.at("op", *COMPARE):
            self.take()
            self.parse_additive()
            return "bool"
        negated = False
        if self.at("kw", "NOT") and self.tokens[self.i + 1].text in ("IN", "BETWEEN", "LIKE", "ILIKE"):
            self.take()
            negated = True
        if self.at("kw", "IN"):
            self.take()
            self.expect("op", "(")
            self.parse_additive()
            while self.at("op", ","):
                self.take()
                self.parse_additive()
            self.expect("op", ")")
            return "bool"
        if self.at("kw", "BETWEEN"):
            self.take()
            self.parse_additive()
            self.expect("kw", "AND")
            self.parse_additive()
            return "bool"
        if self.at("kw", "LIKE", "ILIKE"):
            self.take()
            self.parse_additive()
            return "bool"
        if negated:
            raise InvalidFilter(f"expected IN, BETWEEN or LIKE after NOT at position {self.tok.pos}")
        if self.at("kw", "IS"):
            self.take()
            if self.at("kw", "NOT"):
                self.take()
            if not self.at("kw", "NULL", "TRUE", "FALSE"):
                raise InvalidFilter(f"expected NULL, TRUE or FALSE after IS at position {self.tok.pos}")
            self.take()
            return "bool"
        return kind

    def parse_additive(self) -> str:
        kind = self.parse_multiplicative()
        while self.at("op", "+", "-", "||"):
            self.take()
            self.parse_multiplicative()
            kind = "value"
        return kind

    def parse_multiplicative(self) -> str:
        kind = self.parse_unary()
        while self.at("op", "*", "/", "%"):
            self.take()
            self.parse_unary()
            kind = "value"
        return kind

    def parse_unary(self) -> str:
        signs = 0
        while self.at("op", "-", "+"):  # a loop, like NOT
            self.take()
            signs += 1
        kind = self.parse_primary()
        return "value" if signs else kind

    def parse_primary(self) -> str:
        tok = self.tok
        if tok.kind == "op" and tok.text == "(":
            self._enter()
            self.take()
            kind = self.parse_or()
            self.expect("op", ")")
            self.depth -= 1
            return kind
        if tok.kind in ("num", "str"):
            self.take()
            return "value"
        if tok.kind == "kw":
            return self._keyword_primary(tok)
        if tok.kind == "id":
            self.take()
            if self.at("op", "("):
                return self._call(tok)
            return self._column(tok)
        got = tok.text or "end of filter"
        raise InvalidFilter(f"expected a value or a column at position {tok.pos}, found {got!r}", position=tok.pos)

    def _keyword_primary(self, tok: Token) -> str:
        self.take()
        if tok.text in ("TRUE", "FALSE"):
            return "bool"
        if tok.text == "NULL":
            return "value"
        if tok.text in ("TIMESTAMP", "DATE"):
            self.expect("str")
            return "value"
        if tok.text == "CAST":
            self._enter()
            self.expect("op", "(")
            self.parse_or()
            self.expect("kw", "AS")
            type_tok = self.take()
            if type_tok.kind not in ("id", "kw"):
                raise InvalidFilter(f"expected a type name at position {type_tok.pos}")
            if self.at("op", "("):  # DECIMAL(10, 2)
                while not self.at("op", ")") and not self.at("end"):
                    self.take()
                self.expect("op", ")")
            self.expect("op", ")")
            self.depth -= 1
            return "bool" if type_tok.text.upper() in ("BOOLEAN", "BOOL") else "value"
        raise InvalidFilter(f"unexpected keyword {tok.text} at position {tok.pos}", position=tok.pos)

    def _call(self, name: Token) -> str:
        self._enter()
        self.expect("op", "(")
        if not self.at("op", ")"):
            self.parse_or()
            while self.at("op", ","):
                self.take()
                self.parse_or()
        self.expect("op", ")")
        self.depth -= 1
        return "bool" if name.text.lower() in BOOL_FUNCS else "unknown"

    def _column(self, tok: Token) -> str:
        path = [tok.text]
        while self.at("op", "."):
            self.take()
            path.append(self.expect("id").text)
        field_type = self._resolve(path, tok.pos)
        while self.at("op", "["):  # list or map element: tags[1], meta['k']
            self._enter()
            self.take()
            self.parse_additive()
            self.expect("op", "]")
            self.depth -= 1
            field_type = None
        if field_type is None:
            return "unknown"
        return "bool" if pa.types.is_boolean(field_type) else "value"

    def _resolve(self, path: list[str], pos: int) -> pa.DataType | None:
        head = path[0]
        if head in META_COLUMNS:
            return pa.uint64()
        if head not in self.schema.names:
            hint = difflib.get_close_matches(head, self.schema.names, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            raise InvalidFilter(
                f"unknown column {head!r}{suggestion}", column=head, position=pos, columns=self.schema.names
            )
        t = self.schema.field(head).type
        for part in path[1:]:
            if not pa.types.is_struct(t) or t.get_field_index(part) < 0:
                raise InvalidFilter(f"column {'.'.join(path)!r} does not exist", column=".".join(path), position=pos)
            t = t.field(part).type
        return t

    def _enter(self) -> None:
        """One level deeper (parentheses, calls, CAST, subscripts); bounded so the stack is too."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise InvalidFilter(f"filter is nested more than {MAX_DEPTH} levels deep")

    def _need_bool(self, kind: str, op: str) -> None:
        if kind == "value":
            raise InvalidFilter(f"the operands of {op} must be boolean expressions")


def validate_filter(text: str | None, schema: pa.Schema) -> str | None:
    """The filter, unchanged, if it is a boolean expression over the schema's columns; else a 400."""
    if text is None or text.strip() == "":
        return None
    if len(text) > MAX_LENGTH:
        raise InvalidFilter(f"filter is {len(text)} characters long; the limit is {MAX_LENGTH}")
    if "\x00" in text:
        raise InvalidFilter("filter contains a NUL character")
    parser = _Parser(tokenize(text), schema)
    kind = parser.parse_or()
    if not parser.at("end"):
        tok = parser.tok
        raise InvalidFilter(f"unexpected {tok.text!r} at position {tok.pos}: a filter is one expression",
                            position=tok.pos)
    if kind == "value":
        raise InvalidFilter("filter must be a boolean expression (a comparison, IN, LIKE, IS NULL, AND/OR, ...)")
    return text


def check_filter(snap: Snapshot, text: str | None) -> str | None:
    """The one check every filter passes before it runs: validated here, then planned by Lance.

    ``snap`` is the snapshot the filter will run on. The parser above knows columns and shapes; only
    Lance's planner knows that ``label = 'x'`` on an int column, or ``split = 3`` on a string column,
    cannot run (it refuses even ``label = '3'``). Its complaint is bad input, so it is a 400 here, for
    query, count, search, delete and update alike.
    """
    predicate = validate_filter(text, snap.schema)
    if predicate is not None:
        try:
            snap.explain(predicate)
        except (ValueError, OSError, TypeError) as exc:
            raise InvalidFilter(f"the filter cannot run on this table: {user_reason(exc, snap.schema, predicate)}"
                                ) from exc
    return predicate


@contextmanager
def filter_errors(predicate: str | None) -> Iterator[None]:
    """Turn a filter that fails on the data (``CAST(s AS INT)`` over 'abc') into a 400."""
    try:
        yield
    except (ValueError, OSError) as exc:
        if predicate is None or not is_filter_error(exc):
            raise
        raise InvalidFilter(f"the filter failed on this table's data: {lance_reason(exc)}") from exc


def is_filter_error(exc: BaseException) -> bool:
    """Whether a Lance error is about a filter expression (its message names the filter)."""
    return "filter" in str(exc).lower()


# Arrow's names for types as DataFusion prints them (``Utf8``), and the names a table's schema shows
ENGINE_TYPES = {"Utf8": "string", "LargeUtf8": "string", "Utf8View": "string", "Boolean": "bool",
                "Int8": "int8", "Int16": "int16", "Int32": "int32", "Int64": "int64", "UInt8": "uint8",
                "UInt16": "uint16", "UInt32": "uint32", "UInt64": "uint64", "Float16": "float16",
                "Float32": "float", "Float64": "double", "Date32": "date32", "Binary": "binary",
                "LargeBinary": "binary"}
_LITERAL = re.compile(r"Received literal (\w+)\((.*?)\) and could not convert to literal of type '(\w+)'")


def user_reason(exc: BaseException, schema: pa.Schema, predicate: str) -> str:
    """Lance's complaint about a filter, in the types the table's schema shows: a literal of the wrong
    type names the value, its kind and the columns of the filter it cannot be compared with."""
    reason = lance_reason(exc)
    found = _LITERAL.search(reason)
    if found is None:
        return re.sub(r"\b(" + "|".join(ENGINE_TYPES) + r")\b", lambda m: ENGINE_TYPES[m.group(1)], reason)
    given, value, wanted = found.groups()
    wanted_name = ENGINE_TYPES.get(wanted, wanted.lower())
    named = {t.text.strip("`") for t in tokenize(predicate) if t.kind in ("id", "qid")}
    columns = [f.name for f in schema if f.name in named and str(f.type) in _spellings(wanted_name)]
    what = f"column {', '.join(repr(c) for c in columns)}" if columns else "the column it is compared with"
    shown = f"'{value[1:-1]}'" if value.startswith('"') and value.endswith('"') else value
    numeric = given.startswith(("Int", "UInt", "Float"))
    kind = "text" if ENGINE_TYPES.get(given) == "string" else "a number" if numeric else given
    column = columns[0] if columns else "column"
    return f"{shown} is {kind} but {what} holds {wanted_name} values: {_advice(wanted_name, column)}"


def _spellings(name: str) -> set[str]:
    """How ``pa.DataType.__str__`` writes a type ENGINE_TYPES names (strings have two widths)."""
    return {"string", "large_string"} if name == "string" else {name}


def _advice(name: str, column: str) -> str:
    if name == "string":
        return f"quote the value, e.g. {column} = 'train'"
    if name == "bool":
        return f"compare it with true or false, e.g. {column} = true"
    return f"compare it with a number, unquoted, e.g. {column} = 3"


def lance_reason(exc: BaseException) -> str:
    """Lance's message without its source locations and repeated prefixes."""
    text = re.sub(r",?\s*/\S+\.rs:\d+:\d+", "", str(exc))
    return text.replace("Invalid user input: ", "").strip()[:500]
