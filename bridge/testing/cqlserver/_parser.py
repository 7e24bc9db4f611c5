"""A tokenizer and recursive-descent parser for the CQL subset the engine runs.

Errors read like Cassandra's (``line 1:7 mismatched input 'x' expecting FROM``):
the line is 1-based and the column 0-based, as ANTLR reports them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal, NoReturn

from . import _ast as ast
from ._errors import CQLSyntaxError, Invalid

TokenKind = Literal[
    "ident",
    "qident",
    "string",
    "integer",
    "float",
    "hex",
    "uuid",
    "duration",
    "marker",
    "symbol",
    "eof",
]

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+|--[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
  | (?P<hex>0[xX][0-9a-fA-F]*(?!\w))
  | (?P<duration>(?:\d+(?:mo|ms|us|µs|ns|[ywdhms]))+(?!\w))
  | (?P<float>\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<integer>\d+(?![\w.]))
  | (?P<ident>[A-Za-z][A-Za-z0-9_]*)
  | (?P<qident>"(?:[^"]|"")*")
  | (?P<string>'(?:[^']|'')*'|\$\$.*?\$\$)
  | (?P<symbol><=|>=|!=|[(),;.*=<>\[\]{}:?+-])
    """,
    re.VERBOSE | re.DOTALL,
)

_PERMISSIONS = ("create", "alter", "drop", "select", "modify", "authorize", "describe")


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str  # as written
    value: str  # identifiers lowercased unless quoted, strings unescaped
    line: int
    column: int


def tokenize(query: str) -> list[Token]:
    """Split a query into tokens; an unknown character is a syntax error at its position."""
    tokens: list[Token] = []
    position = 0
    line, line_start = 1, 0
    while position < len(query):
        match = _TOKEN_RE.match(query, position)
        column = position - line_start
        if match is None:
            bad = query[position]
            if query.startswith(("'", '"', "$$"), position):
                raise CQLSyntaxError(f"line {line}:{column} unterminated quoted text")
            raise CQLSyntaxError(f"line {line}:{column} token recognition error at: '{bad}'")
        kind = match.lastgroup
        text = match.group()
        if kind != "space":
            assert kind is not None
            tokens.append(Token(_KINDS[kind], text, _token_value(kind, text), line, column))
        newlines = text.count("\n")
        if newlines:
            line += newlines
            line_start = position + text.rindex("\n") + 1
        position = match.end()
    tokens.append(Token("eof", "<EOF>", "", line, position - line_start))
    return tokens


_KINDS: dict[str, TokenKind] = {
    "uuid": "uuid",
    "duration": "duration",
    "hex": "hex",
    "float": "float",
    "integer": "integer",
    "ident": "ident",
    "qident": "qident",
    "string": "string",
    "symbol": "symbol",
}


def _token_value(kind: str, text: str) -> str:
    if kind == "ident":
        return text.lower()
    if kind == "qident":
        return text[1:-1].replace('""', '"')
    if kind == "string":
        return text[2:-2] if text.startswith("$$") else text[1:-1].replace("''", "'")
    return text


def parse(query: str) -> ast.Statement:
    """Parse one CQL statement (a trailing ``;`` is allowed)."""
    return _Parser(tokenize(query)).statement()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._index = 0
        self._markers = 0

    # --- token helpers ---------------------------------------------------------

    @property
    def _peek(self) -> Token:
        return self._tokens[self._index]

    def _ahead(self, offset: int) -> Token:
        return self._tokens[min(self._index + offset, len(self._tokens) - 1)]

    def _advance(self) -> Token:
        token = self._tokens[self._index]
        if token.kind != "eof":
            self._index += 1
        return token

    def _fail(self, expecting: str) -> NoReturn:
        token = self._peek
        if token.kind == "eof":
            message = (
                f"line {token.line}:{token.column} mismatched input '<EOF>' expecting {expecting}"
            )
        else:
            message = (
                f"line {token.line}:{token.column} mismatched input '{token.text}' "
                f"expecting {expecting}"
            )
        raise CQLSyntaxError(message)

    def _is_keyword(self, word: str, token: Token | None = None) -> bool:
        token = token or self._peek
        return token.kind == "ident" and token.value == word.lower()

    def _accept_keyword(self, *words: str) -> bool:
        """Consume the keywords if all of them come next, in order."""
        for offset, word in enumerate(words):
            if not self._is_keyword(word, self._ahead(offset)):
                return False
        self._index += len(words)
        return True

    def _expect_keyword(self, *words: str) -> None:
        for word in words:
            if not self._accept_keyword(word):
                self._fail(word.upper())

    def _is_symbol(self, symbol: str, token: Token | None = None) -> bool:
        token = token or self._peek
        return token.kind == "symbol" and token.text == symbol

    def _accept_symbol(self, symbol: str) -> bool:
        if self._is_symbol(symbol):
            self._index += 1
            return True
        return False

    def _expect_symbol(self, symbol: str) -> None:
        if not self._accept_symbol(symbol):
            self._fail(f"'{symbol}'")

    def _identifier(self, what: str = "an identifier") -> str:
        token = self._peek
        if token.kind in ("ident", "qident"):
            self._index += 1
            return token.value
        self._fail(what)

    # --- statements --------------------------------------------------------------

    def statement(self) -> ast.Statement:
        token = self._peek
        parsed: ast.Statement
        if self._accept_keyword("select"):
            parsed = self._select()
        elif self._accept_keyword("insert"):
            parsed = self._insert()
        elif self._accept_keyword("update"):
            parsed = self._update()
        elif self._accept_keyword("delete"):
            parsed = self._delete()
        elif self._accept_keyword("begin"):
            parsed = self._batch()
        elif self._accept_keyword("create"):
            parsed = self._create()
        elif self._accept_keyword("drop"):
            parsed = self._drop()
        elif self._accept_keyword("alter"):
            parsed = self._alter()
        elif self._accept_keyword("grant") or self._accept_keyword("revoke"):
            action: Literal["grant", "revoke"] = (
                "grant" if self._tokens[self._index - 1].value == "grant" else "revoke"
            )
            parsed = self._grant(action)
        elif self._accept_keyword("list", "roles"):
            of = self._role_name() if self._accept_keyword("of") else None
            parsed = ast.ListRoles(False, of, not self._accept_keyword("norecursive"))
        elif self._accept_keyword("list", "users"):
            parsed = ast.ListRoles(True)
        elif self._accept_keyword("list"):
            permissions = self._permission_names()
            resource = self._resource() if self._accept_keyword("on") else None
            of = self._role_name() if self._accept_keyword("of") else None
            recursive = not self._accept_keyword("norecursive")
            parsed = ast.ListPermissions(permissions, resource, of, recursive)
        elif self._accept_keyword("describe") or self._accept_keyword("desc"):
            parsed = self._describe()
            self._accept_keyword("with", "internals")
        elif self._accept_keyword("truncate"):
            self._accept_keyword("table") or self._accept_keyword("columnfamily")
            parsed = ast.Truncate(self._table_name())
        elif self._accept_keyword("use"):
            parsed = ast.Use(self._identifier("a keyspace name"))
        else:
            if token.kind == "eof":
                self._fail("a statement")
            raise CQLSyntaxError(
                f"line {token.line}:{token.column} no viable alternative at input '{token.text}'"
            )
        self._accept_symbol(";")
        if self._peek.kind != "eof":
            self._fail("<EOF>")
        return parsed

    def _table_name(self) -> ast.TableName:
        first = self._identifier("a table name")
        if self._accept_symbol("."):
            return ast.TableName(first, self._identifier("a table name"))
        return ast.TableName(None, first)

    def _select(self) -> ast.Select:
        json = self._is_keyword("json") and not (
            self._is_keyword("from", self._ahead(1)) or self._is_symbol(",", self._ahead(1))
            or self._is_keyword("as", self._ahead(1))
        )  # fmt: skip
        if json:
            self._advance()
        distinct = self._accept_keyword("distinct")
        selectors: list[ast.Selector] = []
        if not self._accept_symbol("*"):
            selectors.append(self._selector())
            while self._accept_symbol(","):
                selectors.append(self._selector())
        self._expect_keyword("from")
        table = self._table_name()
        where = self._where() if self._accept_keyword("where") else ()
        group_by: list[str] = []
        if self._accept_keyword("group", "by"):
            group_by.append(self._identifier("a column name"))
            while self._accept_symbol(","):
                group_by.append(self._identifier("a column name"))
        order_by: list[tuple[str, Literal["asc", "desc"]]] = []
        if self._accept_keyword("order", "by"):
            order_by.append(self._ordering())
            while self._accept_symbol(","):
                order_by.append(self._ordering())
        per_partition_limit = None
        if self._accept_keyword("per", "partition", "limit"):
            per_partition_limit = self._term()
        limit = self._term() if self._accept_keyword("limit") else None
        allow_filtering = self._accept_keyword("allow", "filtering")
        return ast.Select(
            table, tuple(selectors), where, tuple(order_by), limit,
            per_partition_limit, allow_filtering, distinct, tuple(group_by), json,
        )  # fmt: skip

    def _selector(self) -> ast.Selector:
        item = self._selection()
        alias = self._identifier("an alias") if self._accept_keyword("as") else None
        return replace(item, alias=alias) if alias else item

    def _selection(self) -> ast.Selector:
        """One selector without its alias: a column, or a function of selectors."""
        if not (self._is_symbol("(", self._ahead(1)) and self._peek.kind == "ident"):
            name = self._identifier("a column name or '*'")
            if self._accept_symbol("."):
                inner = ast.Selector("column", name, None)
                field = self._identifier("a field name")
                return ast.Selector("field", None, None, args=(inner,), cast=field)
            return ast.Selector("column", name, None)
        function = self._advance().value
        self._expect_symbol("(")
        item: ast.Selector
        if function == "count":
            if self._accept_symbol("*"):
                column = None
            elif self._ahead(0).kind == "integer" and self._ahead(0).text == "1":
                self._advance()
                column = None
            else:
                column = self._identifier("'*' or a column name")
            item = ast.Selector("count", column, None)
        elif function in ("writetime", "ttl"):
            kind: Literal["writetime", "ttl"] = "writetime" if function == "writetime" else "ttl"
            item = ast.Selector(kind, self._identifier("a column name"), None)
        elif function in ("min", "max", "sum", "avg"):
            item = ast.Selector("aggregate", self._identifier("a column name"), None, function)
        elif function == "cast":
            inner = self._selection()
            self._expect_keyword("as")
            item = ast.Selector("cast", None, None, args=(inner,), cast=self._type_text())
        else:
            args: list[ast.Selector] = []
            if not self._is_symbol(")"):
                args.append(self._selection())
                while self._accept_symbol(","):
                    args.append(self._selection())
            kind_of: Literal["token", "function"] = "token" if function == "token" else "function"
            item = ast.Selector(kind_of, None, None, function, tuple(args))
        self._expect_symbol(")")
        return item

    def _ordering(self) -> tuple[str, Literal["asc", "desc"]]:
        column = self._identifier("a column name")
        if self._accept_keyword("desc"):
            return column, "desc"
        self._accept_keyword("asc")
        return column, "asc"

    def _where(self) -> tuple[ast.Relation, ...]:
        relations = [self._relation()]
        while self._accept_keyword("and"):
            relations.append(self._relation())
        return tuple(relations)

    def _relation(self) -> ast.Relation:
        if self._is_keyword("token") and self._is_symbol("(", self._ahead(1)):
            self._advance()
            self._expect_symbol("(")
            columns = [self._identifier("a column name")]
            while self._accept_symbol(","):
                columns.append(self._identifier("a column name"))
            self._expect_symbol(")")
            return ast.Relation(",".join(columns), self._comparison(), self._term(), token=True)
        column = self._identifier("a column name")
        if self._accept_keyword("in"):
            if self._is_symbol("?") or self._is_symbol(":"):
                return ast.Relation(column, "IN", self._term())
            self._expect_symbol("(")
            values: list[ast.Term] = []
            if not self._is_symbol(")"):
                values.append(self._term())
                while self._accept_symbol(","):
                    values.append(self._term())
            self._expect_symbol(")")
            return ast.Relation(column, "IN", tuple(values))
        if self._accept_keyword("contains"):
            op: ast.Operator = "CONTAINS KEY" if self._accept_keyword("key") else "CONTAINS"
            return ast.Relation(column, op, self._term())
        return ast.Relation(column, self._comparison(), self._term())

    def _comparison(self) -> ast.Operator:
        token = self._peek
        if token.kind == "symbol" and token.text in ("=", "<", "<=", ">", ">=", "!="):
            self._advance()
            op: ast.Operator = token.text  # type: ignore[assignment]
            return op
        self._fail("a comparison operator")

    def _insert(self) -> ast.Insert:
        self._expect_keyword("into")
        table = self._table_name()
        if self._accept_keyword("json"):
            document = self._term()
            default_unset = False
            if self._accept_keyword("default"):
                if self._accept_keyword("unset"):
                    default_unset = True
                else:
                    self._expect_keyword("null")
            if_not_exists = self._accept_keyword("if", "not", "exists")
            return ast.Insert(table, (), (), if_not_exists, self._using(), document, default_unset)
        self._expect_symbol("(")
        columns = [self._identifier("a column name")]
        while self._accept_symbol(","):
            columns.append(self._identifier("a column name"))
        self._expect_symbol(")")
        self._expect_keyword("values")
        self._expect_symbol("(")
        values = [self._term()]
        while self._accept_symbol(","):
            values.append(self._term())
        self._expect_symbol(")")
        if_not_exists = self._accept_keyword("if", "not", "exists")
        using = self._using()
        return ast.Insert(table, tuple(columns), tuple(values), if_not_exists, using)

    def _using(self) -> ast.Using:
        if not self._accept_keyword("using"):
            return ast.Using()
        ttl: ast.Term | None = None
        timestamp: ast.Term | None = None
        while True:
            if self._accept_keyword("ttl"):
                ttl = self._term()
            elif self._accept_keyword("timestamp"):
                timestamp = self._term()
            else:
                self._fail("TTL or TIMESTAMP")
            if not self._accept_keyword("and"):
                return ast.Using(ttl, timestamp)

    def _update(self) -> ast.Update:
        table = self._table_name()
        using = self._using()
        self._expect_keyword("set")
        assignments = [self._assignment()]
        while self._accept_symbol(","):
            assignments.append(self._assignment())
        self._expect_keyword("where")
        where = self._where()
        if_exists, conditions = self._if_clause()
        return ast.Update(table, using, tuple(assignments), where, if_exists, conditions)

    def _if_clause(self) -> tuple[bool, tuple[ast.IfCondition, ...]]:
        """``IF EXISTS`` or ``IF cond AND cond ...`` after UPDATE/DELETE's WHERE clause."""
        if not self._accept_keyword("if"):
            return False, ()
        if self._accept_keyword("exists"):
            return True, ()
        conditions = [self._if_condition()]
        while self._accept_keyword("and"):
            conditions.append(self._if_condition())
        return False, tuple(conditions)

    def _if_condition(self) -> ast.IfCondition:
        column = self._identifier("a column name")
        key = None
        if self._accept_symbol("["):
            key = self._term()
            self._expect_symbol("]")
        if self._accept_keyword("in"):
            if self._accept_symbol("("):
                return ast.IfCondition(column, "IN", self._terms_until(")"), key)
            return ast.IfCondition(column, "IN", self._term(), key)
        return ast.IfCondition(column, self._comparison(), self._term(), key)

    def _assignment(self) -> ast.Assignment:
        column = self._identifier("a column name")
        if self._accept_symbol("."):
            field = self._identifier("a field name")
            self._expect_symbol("=")
            return ast.Assignment(column, "field", self._term(), field=field)
        if self._accept_symbol("["):
            key = self._term()
            self._expect_symbol("]")
            self._expect_symbol("=")
            return ast.Assignment(column, "index", self._term(), key)
        if self._is_symbol("+") or self._is_symbol("-"):
            # c += v / c -= v
            op_token = self._advance()
            self._expect_symbol("=")
            return ast.Assignment(column, "+" if op_token.text == "+" else "-", self._term())
        self._expect_symbol("=")
        same_column = self._peek.kind in ("ident", "qident") and self._peek.value == column
        if same_column and (
            self._is_symbol("+", self._ahead(1)) or self._is_symbol("-", self._ahead(1))
        ):
            self._advance()
            op_token = self._advance()
            return ast.Assignment(column, "+" if op_token.text == "+" else "-", self._term())
        value = self._term()
        if self._accept_symbol("+"):
            if self._identifier("the column name") != column:
                self._fail(f"'{column}'")
            return ast.Assignment(column, "prepend", value)
        return ast.Assignment(column, "=", value)

    def _delete(self) -> ast.Delete:
        targets: list[ast.DeleteTarget] = []
        if not self._is_keyword("from"):
            targets.append(self._delete_target())
            while self._accept_symbol(","):
                targets.append(self._delete_target())
        self._expect_keyword("from")
        table = self._table_name()
        using = self._using()
        self._expect_keyword("where")
        where = self._where()
        if_exists, conditions = self._if_clause()
        return ast.Delete(table, tuple(targets), using, where, if_exists, conditions)

    def _delete_target(self) -> ast.DeleteTarget:
        column = self._identifier("a column name or FROM")
        if self._accept_symbol("["):
            key = self._term()
            self._expect_symbol("]")
            return ast.DeleteTarget(column, key)
        return ast.DeleteTarget(column)

    def _batch(self) -> ast.Batch:
        kind: Literal["logged", "unlogged", "counter"] = "logged"
        if self._accept_keyword("unlogged"):
            kind = "unlogged"
        elif self._accept_keyword("counter"):
            kind = "counter"
        self._expect_keyword("batch")
        using = self._using()
        statements: list[ast.Insert | ast.Update | ast.Delete] = []
        while not self._accept_keyword("apply"):
            if self._accept_keyword("insert"):
                statements.append(self._insert())
            elif self._accept_keyword("update"):
                statements.append(self._update())
            elif self._accept_keyword("delete"):
                statements.append(self._delete())
            else:
                self._fail("INSERT, UPDATE, DELETE or APPLY")
            self._accept_symbol(";")
        self._expect_keyword("batch")
        return ast.Batch(kind, using, tuple(statements))

    def _create(self) -> ast.Statement:
        if self._accept_keyword("keyspace") or self._accept_keyword("schema"):
            if_not_exists = self._accept_keyword("if", "not", "exists")
            name = self._identifier("a keyspace name")
            self._expect_keyword("with")
            return ast.CreateKeyspace(name, if_not_exists, self._properties())
        if self._accept_keyword("table") or self._accept_keyword("columnfamily"):
            return self._create_table()
        if self._accept_keyword("type"):
            if_not_exists = self._accept_keyword("if", "not", "exists")
            keyspace, name = self._qualified_name("a type name")
            self._expect_symbol("(")
            fields = [self._field()]
            while self._accept_symbol(","):
                fields.append(self._field())
            self._expect_symbol(")")
            return ast.CreateType(keyspace, name, if_not_exists, tuple(fields))
        if self._is_keyword("role") or self._is_keyword("user"):
            return self._role("create")
        disabled = None
        if self._accept_keyword("materialized", "view"):
            disabled = "Materialized views are disabled. Enable in cassandra.yaml to use."
        elif self._accept_keyword("function") or self._accept_keyword("or", "replace", "function"):
            disabled = (
                "User-defined functions are disabled in cassandra.yaml - set "
                "user_defined_functions_enabled=true to enable"
            )
        if disabled is not None:
            while self._peek.kind != "eof" and not self._is_symbol(";"):
                self._advance()  # the rest of the definition is not needed to refuse it
            return ast.Disabled(disabled)
        custom = self._accept_keyword("custom")
        if self._accept_keyword("index"):
            return self._create_index(custom)
        self._fail("KEYSPACE, TABLE, TYPE or INDEX")

    def _create_index(self, custom: bool) -> ast.CreateIndex:
        if_not_exists = self._accept_keyword("if", "not", "exists")
        name = None if self._is_keyword("on") else self._identifier("an index name")
        self._expect_keyword("on")
        table = self._table_name()
        self._expect_symbol("(")
        target: Literal["values", "keys", "entries", "full"] | None = None
        if self._peek.value in ("values", "keys", "entries", "full") and self._is_symbol(
            "(", self._ahead(1)
        ):
            target = self._advance().value  # type: ignore[assignment]
            self._expect_symbol("(")
            column = self._identifier("a column name")
            self._expect_symbol(")")
        else:
            column = self._identifier("a column name")
        self._expect_symbol(")")
        using = None
        if self._accept_keyword("using"):
            token = self._advance()
            if token.kind != "string":
                self._fail("an index class name")
            using = token.value
            if self._accept_keyword("with"):
                self._properties()  # options of a custom index class: not interpreted
        if custom and using is None:
            self._fail("USING")
        return ast.CreateIndex(table, name, column, target, if_not_exists, using)

    def _renames(self, what: str) -> tuple[tuple[str, str], ...]:
        """``a TO b [AND c TO d ...]``."""
        renamed = []
        while True:
            old = self._identifier(what)
            self._expect_keyword("to")
            renamed.append((old, self._identifier(what)))
            if not self._accept_keyword("and"):
                return tuple(renamed)

    def _qualified_name(self, what: str) -> tuple[str | None, str]:
        first = self._identifier(what)
        if self._accept_symbol("."):
            return first, self._identifier(what)
        return None, first

    def _field(self) -> tuple[str, str]:
        return self._identifier("a field name"), self._type_text()

    def _create_table(self) -> ast.CreateTable:
        if_not_exists = self._accept_keyword("if", "not", "exists")
        table = self._table_name()
        self._expect_symbol("(")
        columns: list[ast.ColumnDefinition] = []
        partition_key: list[str] = []
        clustering: list[str] = []
        primary_key_seen = False
        while True:
            if self._accept_keyword("primary", "key"):
                if primary_key_seen:
                    raise CQLSyntaxError("Multiple PRIMARY KEYs specified (exactly one required)")
                primary_key_seen = True
                self._expect_symbol("(")
                if self._accept_symbol("("):
                    partition_key.append(self._identifier("a column name"))
                    while self._accept_symbol(","):
                        partition_key.append(self._identifier("a column name"))
                    self._expect_symbol(")")
                else:
                    partition_key.append(self._identifier("a column name"))
                while self._accept_symbol(","):
                    clustering.append(self._identifier("a column name"))
                self._expect_symbol(")")
            else:
                name = self._identifier("a column definition")
                type_text = self._type_text()
                static = self._accept_keyword("static")
                inline_key = self._accept_keyword("primary", "key")
                if inline_key:
                    if primary_key_seen:
                        raise CQLSyntaxError(
                            "Multiple PRIMARY KEYs specified (exactly one required)"
                        )
                    primary_key_seen = True
                    partition_key.append(name)
                columns.append(ast.ColumnDefinition(name, type_text, static, inline_key))
            if not self._accept_symbol(","):
                break
            if self._is_symbol(")"):
                break
        self._expect_symbol(")")
        options: dict[str, object] = {}
        clustering_order: list[tuple[str, Literal["asc", "desc"]]] = []
        if self._accept_keyword("with"):
            while True:
                if self._accept_keyword("clustering", "order", "by"):
                    self._expect_symbol("(")
                    clustering_order.append(self._ordering())
                    while self._accept_symbol(","):
                        clustering_order.append(self._ordering())
                    self._expect_symbol(")")
                elif self._accept_keyword("compact", "storage"):
                    options["compact storage"] = True
                else:
                    key, value = self._property()
                    options[key] = value
                if not self._accept_keyword("and"):
                    break
        return ast.CreateTable(
            table, if_not_exists, tuple(columns), tuple(partition_key), tuple(clustering),
            tuple(clustering_order), options,
        )  # fmt: skip

    def _type_text(self) -> str:
        """A type as text (``frozen<map<text, int>>``); ``parse_type`` gives it meaning."""
        name = self._identifier("a type")
        if not self._accept_symbol("<"):
            return name
        args = [self._type_text()]
        while self._accept_symbol(","):
            args.append(self._type_text())
        self._expect_symbol(">")
        return f"{name}<{', '.join(args)}>"

    def _properties(self) -> dict[str, object]:
        options: dict[str, object] = {}
        while True:
            key, value = self._property()
            options[key] = value
            if not self._accept_keyword("and"):
                return options

    def _property(self) -> tuple[str, object]:
        key = self._identifier("a property name")
        self._expect_symbol("=")
        if self._accept_symbol("{"):
            mapping: dict[str, str] = {}
            if not self._accept_symbol("}"):
                while True:
                    map_key = self._property_value()
                    self._expect_symbol(":")
                    mapping[_option_text(map_key)] = _option_text(self._property_value())
                    if not self._accept_symbol(","):
                        break
                self._expect_symbol("}")
            return key, mapping
        return key, self._property_value()

    def _property_value(self) -> object:
        token = self._peek
        negative = False
        if self._is_symbol("-"):
            self._advance()
            negative, token = True, self._peek
        if token.kind == "string":
            self._advance()
            return token.value
        if token.kind == "integer":
            self._advance()
            return -int(token.text) if negative else int(token.text)
        if token.kind == "float":
            self._advance()
            return -float(token.text) if negative else float(token.text)
        if token.kind == "ident" and not negative:
            self._advance()
            if token.value in ("true", "false"):
                return token.value == "true"
            return token.value
        self._fail("a property value")

    def _drop(self) -> ast.Statement:
        if self._accept_keyword("keyspace") or self._accept_keyword("schema"):
            if_exists = self._accept_keyword("if", "exists")
            return ast.DropKeyspace(self._identifier("a keyspace name"), if_exists)
        if self._accept_keyword("table") or self._accept_keyword("columnfamily"):
            if_exists = self._accept_keyword("if", "exists")
            return ast.DropTable(self._table_name(), if_exists)
        if self._accept_keyword("type"):
            if_exists = self._accept_keyword("if", "exists")
            return ast.DropType(*self._qualified_name("a type name"), if_exists)
        if self._accept_keyword("index"):
            if_exists = self._accept_keyword("if", "exists")
            return ast.DropIndex(*self._qualified_name("an index name"), if_exists)
        if self._is_keyword("role") or self._is_keyword("user"):
            return self._role("drop")
        self._fail("KEYSPACE, TABLE, TYPE or INDEX")

    def _describe(self) -> ast.Describe:
        full = self._accept_keyword("full")
        if full or self._accept_keyword("schema"):
            if full:
                self._expect_keyword("schema")
            return ast.Describe("schema", full=full)
        if self._accept_keyword("keyspaces"):
            return ast.Describe("keyspaces")
        if self._accept_keyword("tables"):
            return ast.Describe("tables")
        if self._accept_keyword("types"):
            return ast.Describe("types")
        if self._accept_keyword("keyspace"):
            named = self._peek.kind != "eof" and not self._is_symbol(";")
            named = named and not self._is_keyword("with")
            return ast.Describe("keyspace", self._identifier("a keyspace name") if named else None)
        kind: Literal["table", "type", "generic"] = "generic"
        if self._accept_keyword("table") or self._accept_keyword("columnfamily"):
            kind = "table"
        elif self._accept_keyword("type"):
            kind = "type"
        name = self._table_name()
        return ast.Describe(kind, name.keyspace, name.name)

    def _grant(self, action: Literal["grant", "revoke"]) -> ast.Statement:
        """GRANT/REVOKE of permissions, or of a role to a role."""
        if not self._is_keyword("all") and self._peek.value not in _PERMISSIONS:
            role = self._role_name()
            self._expect_keyword("to" if action == "grant" else "from")
            return ast.GrantRole(action, role, self._role_name())
        permissions = self._permission_names()
        self._expect_keyword("on")
        resource = self._resource()
        self._expect_keyword("to" if action == "grant" else "from")
        return ast.Grant(action, permissions, resource, self._role_name())

    def _permission_names(self) -> tuple[str, ...] | None:
        if self._accept_keyword("all"):
            self._accept_keyword("permissions")
            return None
        token = self._peek
        if token.kind != "ident" or token.value not in _PERMISSIONS:
            self._fail("a permission")
        self._advance()
        self._accept_keyword("permission")
        return (token.value.upper(),)

    def _resource(self) -> ast.Resource:
        if self._accept_keyword("all", "keyspaces"):
            return ast.Resource("data")
        if self._accept_keyword("all", "roles"):
            return ast.Resource("roles")
        if self._accept_keyword("keyspace"):
            return ast.Resource("keyspace", (self._identifier("a keyspace name"),))
        if self._accept_keyword("role"):
            return ast.Resource("role", (self._role_name(),))
        self._accept_keyword("table")
        name = self._table_name()
        return ast.Resource("table", (name.keyspace, name.name))

    def _role_name(self) -> str:
        token = self._peek
        if token.kind == "string":
            self._advance()
            return token.value
        return self._identifier("a role name")

    def _role(self, action: Literal["create", "alter", "drop"]) -> ast.RoleStatement:
        """The rest of CREATE/ALTER/DROP ROLE|USER (the keyword ROLE or USER comes next)."""
        user_syntax = self._advance().value == "user"
        if_flag = self._accept_keyword("if", "not", "exists") or self._accept_keyword(
            "if", "exists"
        )
        name = self._role_name()
        options: dict[str, object] = {}
        if action != "drop" and self._accept_keyword("with"):
            if user_syntax:
                self._expect_keyword("password")
                options["password"] = self._property_value()
            else:
                options = self._properties()
        if user_syntax:
            if self._accept_keyword("superuser"):
                options["superuser"] = True
            elif self._accept_keyword("nosuperuser"):
                options["superuser"] = False
        return ast.RoleStatement(action, name, if_flag, user_syntax, options)

    def _alter(self) -> ast.Statement:
        if self._is_keyword("role") or self._is_keyword("user"):
            return self._role("alter")
        if self._accept_keyword("type"):
            keyspace, name = self._qualified_name("a type name")
            if self._accept_keyword("add"):
                return ast.AlterType(keyspace, name, added=(self._field(),))
            self._expect_keyword("rename")
            return ast.AlterType(keyspace, name, renamed=self._renames("a field name"))
        if self._accept_keyword("keyspace") or self._accept_keyword("schema"):
            if_exists = self._accept_keyword("if", "exists")
            name = self._identifier("a keyspace name")
            self._expect_keyword("with")
            return ast.AlterKeyspace(name, if_exists, self._properties())
        if not (self._accept_keyword("table") or self._accept_keyword("columnfamily")):
            self._fail("KEYSPACE or TABLE")
        if_exists = self._accept_keyword("if", "exists")
        table = self._table_name()
        if self._accept_keyword("add"):
            if_column = self._accept_keyword("if", "not", "exists")
            added: list[ast.ColumnDefinition] = []
            grouped = self._accept_symbol("(")
            while True:
                name = self._identifier("a column name")
                type_text = self._type_text()
                static = self._accept_keyword("static")
                added.append(ast.ColumnDefinition(name, type_text, static, False))
                if not grouped or not self._accept_symbol(","):
                    break
            if grouped:
                self._expect_symbol(")")
            return ast.AlterTable(
                table, "add", added=tuple(added), if_exists=if_exists, if_column=if_column
            )
        if self._accept_keyword("drop"):
            if_column = self._accept_keyword("if", "exists")
            if self._accept_symbol("("):
                dropped = [self._identifier("a column name")]
                while self._accept_symbol(","):
                    dropped.append(self._identifier("a column name"))
                self._expect_symbol(")")
            else:
                dropped = [self._identifier("a column name")]
            if self._accept_keyword("using", "timestamp"):
                self._term()  # no dropped_columns history: the drop is immediate
            return ast.AlterTable(
                table, "drop", dropped=tuple(dropped), if_exists=if_exists, if_column=if_column
            )
        if self._accept_keyword("rename"):
            if_column = self._accept_keyword("if", "exists")
            renamed = self._renames("a column name")
            return ast.AlterTable(
                table, "rename", renamed=renamed, if_exists=if_exists, if_column=if_column
            )
        if self._accept_keyword("with"):
            return ast.AlterTable(table, "with", options=self._properties(), if_exists=if_exists)
        if self._accept_keyword("alter"):
            raise Invalid("Altering column types is no longer supported")
        self._fail("ADD, DROP, RENAME, WITH or ALTER")

    # --- terms ---------------------------------------------------------------------

    def _term(self) -> ast.Term:
        token = self._peek
        if token.kind == "symbol":
            if token.text == "?":
                self._advance()
                return self._marker(None)
            if token.text == ":":
                self._advance()
                return self._marker(self._identifier("a bind marker name"))
            if token.text == "-":
                self._advance()
                number = self._peek
                if number.kind in ("integer", "float", "duration"):
                    self._advance()
                    return ast.Constant(number.kind, "-" + number.text)
                if self._is_keyword("nan") or self._is_keyword("infinity"):
                    self._advance()
                    return ast.Constant("float", "-" + self._tokens[self._index - 1].value)
                self._fail("a number")
            if token.text == "[":
                self._advance()
                return ast.ListTerm(self._terms_until("]"))
            if token.text == "{":
                return self._brace_term()
            if token.text == "(":
                self._advance()
                return ast.TupleTerm(self._terms_until(")"))
        if token.kind in ("string", "integer", "float", "hex", "uuid", "duration"):
            self._advance()
            return ast.Constant(token.kind, token.value)
        if token.kind == "ident":
            if token.value in ("true", "false"):
                self._advance()
                return ast.Constant("boolean", token.value)
            if token.value == "null":
                self._advance()
                return ast.Null()
            if token.value in ("nan", "infinity"):
                self._advance()
                return ast.Constant("float", token.value)
            if _ISO_DURATION.match(token.text):
                self._advance()
                return ast.Constant("duration", token.text)
            if self._is_symbol("(", self._ahead(1)):
                self._advance()
                self._advance()
                return ast.FunctionCall(token.value, self._terms_until(")"))
        self._fail("a value")

    def _marker(self, name: str | None) -> ast.BindMarker:
        marker = ast.BindMarker(self._markers, name)
        self._markers += 1
        return marker

    def _terms_until(self, closing: str) -> tuple[ast.Term, ...]:
        items: list[ast.Term] = []
        if self._accept_symbol(closing):
            return ()
        items.append(self._term())
        while self._accept_symbol(","):
            items.append(self._term())
        self._expect_symbol(closing)
        return tuple(items)

    def _udt_field(self) -> tuple[str, ast.Term]:
        name = self._identifier("a field name")
        self._expect_symbol(":")
        return name, self._term()

    def _brace_term(self) -> ast.Term:
        self._expect_symbol("{")
        if self._accept_symbol("}"):
            return ast.MapTerm(())
        if (
            self._peek.kind in ("ident", "qident") and self._is_symbol(":", self._ahead(1))
            and self._peek.value not in ("true", "false", "null", "nan", "infinity")
        ):  # fmt: skip
            fields = [self._udt_field()]
            while self._accept_symbol(","):
                fields.append(self._udt_field())
            self._expect_symbol("}")
            return ast.UserTypeTerm(tuple(fields))
        first = self._term()
        if self._accept_symbol(":"):
            pairs = [(first, self._term())]
            while self._accept_symbol(","):
                key = self._term()
                self._expect_symbol(":")
                pairs.append((key, self._term()))
            self._expect_symbol("}")
            return ast.MapTerm(tuple(pairs))
        items = [first]
        while self._accept_symbol(","):
            items.append(self._term())
        self._expect_symbol("}")
        return ast.SetTerm(tuple(items))


# An ISO 8601 duration written bare (P1DT2H): the tokenizer sees an identifier.
_ISO_DURATION = re.compile(r"P(?=\w)(\d+[YMWD])*(T(\d+[HMS])+)?$", re.IGNORECASE)


def _option_text(value: object) -> str:
    """A map option's value as Cassandra stores it: text, booleans in lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
