"""The in-memory CQL engine: schema, data and statements, behind one ``Engine`` object.

The protocol server hands it query text or prepared statements with bind values
as wire bytes and gets back result objects (``_results``) or a ``CQLError``.
Nothing unexpected escapes ``execute``: a bug inside becomes a ``ServerError``.
"""

from __future__ import annotations

import hashlib
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from . import _ast as ast
from . import _conditions as conditions
from ._binding import Context, Receivers, bind_decoders, decode_values, evaluate
from ._describe import describe
from ._errors import (
    AlreadyExists,
    ConfigurationError,
    CQLError,
    CQLSyntaxError,
    Invalid,
    ServerError,
    Unprepared,
)
from ._json import expand_insert as expand_json_insert
from ._json import rows_as_json as json_rows
from ._parser import parse
from ._permissions import Permissions
from ._read import SelectPlan, run_select, selection
from ._results import (
    ColumnSpec,
    Prepared,
    Result,
    RowsResult,
    SchemaChangeResult,
    SetKeyspaceResult,
    VoidResult,
)
from ._roles import Roles
from ._schema import (
    SYSTEM_KEYSPACES,
    SYSTEM_SCHEMA_TABLES,
    SYSTEM_VIRTUAL_SCHEMA_TABLES,
    TABLE_OPTION_DEFAULTS,
    Column,
    ColumnKind,
    Keyspace,
    Table,
    column_rows,
    index_rows,
    keyspace_rows,
    make_table,
    normalize_replication,
    normalize_table_options,
    table_rows,
    type_rows,
)
from ._storage import TableData
from ._types import (
    BIGINT,
    BOOLEAN,
    DURATION,
    INT,
    TEXT,
    CollectionType,
    CQLType,
    ListType,
    MapType,
    SetType,
    TupleType,
    UserType,
    UserTypes,
    native_type,
    parse_type,
)
from ._unset import UNSET
from ._where import check_select, check_write, column_of, receive, resolve
from ._write import (
    InsertPlan,
    WriteOptions,
    applied_result,
    check_conditional_delete,
    delete,
    insert,
    row_values,
    ttl_of,
    udt_field,
    update,
)

__all__ = [
    "AlreadyExists",
    "CQLError",
    "CQLSyntaxError",
    "Column",
    "ColumnSpec",
    "Engine",
    "Invalid",
    "Keyspace",
    "Prepared",
    "RowsResult",
    "SchemaChangeResult",
    "ServerError",
    "SetKeyspaceResult",
    "Table",
    "Unprepared",
    "VoidResult",
]

VirtualRows = Callable[[object], list[dict[str, object]]]
Values = list[bytes | None] | dict[str, bytes | None] | None

_NO_KEYSPACE = (
    "No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename"
)


class Engine:
    """An in-memory Cassandra: keyspaces, tables, rows and the ``system_schema`` views of them.

    ``clock`` returns seconds since the epoch; tests pass their own to make TTLs expire
    without sleeping.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.keyspaces: dict[str, Keyspace] = {}
        self.schema_version = uuid.uuid4()
        self._system: dict[str, Keyspace] = {
            name: Keyspace(name, dict(replication))
            for name, replication in SYSTEM_KEYSPACES.items()
        }
        self._virtual_keyspaces: dict[str, Keyspace] = {
            "system_virtual_schema": Keyspace("system_virtual_schema", {})
        }
        self._virtual_rows: dict[tuple[str, str], VirtualRows] = {}
        self._data: dict[tuple[str, str], TableData] = {}
        self._prepared: dict[bytes, Prepared] = {}
        self._plans: dict[bytes, _PlanEntry] = {}
        self._listeners: list[Callable[[SchemaChangeResult], None]] = []
        self._last_timestamp = 0
        self.roles = Roles()
        self.permissions = Permissions(self.roles, self._resource_exists)
        self._register_schema_tables()

    # --- public API ----------------------------------------------------------------

    def add_schema_listener(self, fn: Callable[[SchemaChangeResult], None]) -> None:
        """Call ``fn`` after every schema change (the server turns it into an event)."""
        self._listeners.append(fn)

    def register_virtual_table(
        self,
        keyspace: str,
        table: str,
        columns: list[tuple[str, str, str]],
        rows: VirtualRows,
    ) -> None:
        """Serve ``keyspace.table`` from ``rows(context)``, computed for each request."""
        space = self._system.get(keyspace) or self._virtual_keyspaces.get(keyspace)
        if space is None:
            space = self._system[keyspace] = Keyspace(
                keyspace, {"class": "org.apache.cassandra.locator.LocalStrategy"}
            )
        space.tables[table] = make_table(keyspace, table, columns, virtual=True)
        self._virtual_rows[(keyspace, table)] = rows

    def prepare(self, query: str, keyspace: str | None) -> Prepared:
        """Parse and check ``query`` once; the result is cached under its id."""
        statement_id = hashlib.md5(((keyspace or "") + query).encode()).digest()
        cached = self._prepared.get(statement_id)
        if cached is not None:
            return cached
        try:
            prepared = self._prepare(statement_id, query, keyspace)
        except CQLError:
            raise
        except Exception as error:
            raise ServerError(f"Unexpected error while preparing: {error!r}") from error
        self._prepared[statement_id] = prepared
        return prepared

    def get_prepared(self, statement_id: bytes) -> Prepared:
        prepared = self._prepared.get(statement_id)
        if prepared is None:
            raise Unprepared(statement_id)
        return prepared

    def prepared_ids(self) -> frozenset[bytes]:
        """The ids of every statement prepared and still valid."""
        return frozenset(self._prepared)

    def forget_prepared(self) -> None:
        """Drop every prepared statement, so clients must prepare again."""
        self._prepared.clear()
        self._plans.clear()

    def execute(
        self,
        query: str | Prepared,
        values: Values = None,
        *,
        keyspace: str | None = None,
        page_size: int | None = None,
        paging_state: bytes | None = None,
        timestamp: int | None = None,
        context: object = None,
        user: str | None = None,
    ) -> Result:
        """Run one statement; values are wire bytes, decoded by the marker's column type.

        ``user`` is the role the connection logged in as (None: no login, anonymous).
        """
        try:
            # Plans skip the permission check, so they run only with permissions off.
            checked = self.permissions.enabled
            if isinstance(query, Prepared) and type(values) is list and not checked:
                plan = self._plan(query)
                if type(plan) is InsertPlan:
                    plan.run(values, timestamp, self._next_timestamp, self.clock)
                    return VoidResult()
                if type(plan) is SelectPlan and paging_state is None:
                    rows = plan.run(values, page_size, self.clock)
                    if rows is not None:
                        return rows
            prepared = query if isinstance(query, Prepared) else self._prepare(b"", query, keyspace)
            assert prepared.statement is not None
            ctx = Context(self._decode(prepared, values), self.clock)
            return self._run(
                prepared.statement, prepared.keyspace if isinstance(query, Prepared) else keyspace,
                ctx, page_size=page_size, paging_state=paging_state, timestamp=timestamp,
                request=context, user=user,
            )  # fmt: skip
        except CQLError:
            raise
        except RecursionError:
            raise Invalid("Statement is nested too deeply") from None
        except Exception as error:
            raise ServerError(f"Unexpected error while executing: {error!r}") from error

    def execute_batch(
        self,
        statements: list[tuple[str | Prepared, list[bytes | None]]],
        *,
        keyspace: str | None,
        batch_type: int,
        timestamp: int | None = None,
        context: object = None,
        user: str | None = None,
    ) -> VoidResult | RowsResult:
        """Apply INSERT/UPDATE/DELETE statements together with one timestamp.

        A batch with IF conditions applies all or nothing and answers ``[applied]``.
        """
        try:
            stamp = timestamp if timestamp is not None else self._next_timestamp()
            planned: list[tuple[ast.Statement, str | None, Context]] = []
            for query, values in statements:
                if isinstance(query, Prepared):
                    prepared, space = query, query.keyspace
                else:
                    prepared, space = self._prepare(b"", query, keyspace), keyspace
                assert prepared.statement is not None
                if not isinstance(prepared.statement, ast.Insert | ast.Update | ast.Delete):
                    raise Invalid(
                        "Only INSERT, UPDATE and DELETE statements are allowed in a BATCH"
                    )
                if self.permissions.enabled:
                    self._authorize(prepared.statement, space, user)
                planned.append(
                    (prepared.statement, space, Context(self._decode(prepared, values), self.clock))
                )
            return self._apply_batch(planned, stamp)
        except CQLError:
            raise
        except Exception as error:
            raise ServerError(f"Unexpected error while executing a batch: {error!r}") from error

    # --- preparing -------------------------------------------------------------------

    def _prepare(self, statement_id: bytes, query: str, keyspace: str | None) -> Prepared:
        statement = parse(query)
        receivers = Receivers()
        tables: set[tuple[str, str]] = set()
        result: list[ColumnSpec] | None = None
        pk_indexes: list[int] = []
        for part in statement.statements if isinstance(statement, ast.Batch) else (statement,):
            if isinstance(part, ast.Batch):
                continue
            if isinstance(part, ast.Select | ast.Insert | ast.Update | ast.Delete):
                table = self._table(part.table, keyspace)
                tables.add((table.keyspace, table.name))
                if isinstance(part, ast.Insert) and len(part.columns) != len(part.values):
                    raise Invalid("Unmatched column names/values")
                self._receive(part, table, receivers)
                if not isinstance(part, ast.Select) and not _json_insert(part):
                    check_write(table, part)
                pk_indexes = _pk_indexes(part, table)
                if isinstance(part, ast.Select):
                    result = selection(table, part).specs
                    if part.json:
                        result = [ColumnSpec(table.keyspace, table.name, "[json]", TEXT)]
                    check_select(table, part.where, part.allow_filtering)
            if (
                isinstance(part, ast.Batch | ast.Insert | ast.Update | ast.Delete)
                or part is statement
            ):
                self._receive_using(statement, receivers)
        specs = receivers.ordered()
        if len(specs) != _count_markers(statement):
            raise Invalid("Bind markers are not supported in this position")
        names = [spec.name for spec in specs]
        return Prepared(
            statement_id, query, keyspace, specs, names,
            [] if isinstance(statement, ast.Batch) else pk_indexes,
            result, statement, frozenset(tables),
        )  # fmt: skip

    def _receive(
        self,
        part: ast.Select | ast.Insert | ast.Update | ast.Delete,
        table: Table,
        receivers: Receivers,
    ) -> None:
        if isinstance(part, ast.Select):
            receive(table, part.where, receivers)
            for term, name in (
                (part.limit, "[limit]"),
                (part.per_partition_limit, "[per_partition_limit]"),
            ):
                if term is not None:
                    receivers.term(term, receivers.spec(table, name, INT))
            return
        if isinstance(part, ast.Insert):
            for name, term in zip(part.columns, part.values, strict=False):
                receivers.column(term, table, column_of(table, name))
            if part.json is not None:
                receivers.term(part.json, receivers.spec(table, "[json]", TEXT))
        elif isinstance(part, ast.Update):
            for assignment in part.assignments:
                column = column_of(table, assignment.column)
                _receive_assignment(receivers, table, column, assignment)
            receive(table, part.where, receivers)
            conditions.receive_conditions(table, part.conditions, receivers)
        else:
            for target in part.targets:
                column = column_of(table, target.column)
                if target.key is not None:
                    key_type = column.type.key if isinstance(column.type, MapType) else INT
                    receivers.term(
                        target.key, receivers.spec(table, f"key({column.name})", key_type)
                    )
            receive(table, part.where, receivers)
            conditions.receive_conditions(table, part.conditions, receivers)
        ttl, stamp = part.using.ttl, part.using.timestamp
        if ttl is not None:
            receivers.term(ttl, receivers.spec(table, "[ttl]", INT))
        if stamp is not None:
            receivers.term(stamp, receivers.spec(table, "[timestamp]", BIGINT))

    def _receive_using(self, statement: ast.Statement, receivers: Receivers) -> None:
        if isinstance(statement, ast.Batch):
            if statement.using.timestamp is not None:
                receivers.term(statement.using.timestamp, ColumnSpec("", "", "[timestamp]", BIGINT))
            if statement.using.ttl is not None:
                raise Invalid("Global TTL on the BATCH statement is not supported.")

    def _decode(self, prepared: Prepared, values: Values) -> list[object]:
        specs = prepared.bind
        if values is None:
            values = []
        if isinstance(values, dict):
            lowered = {k.lower(): v for k, v in values.items()}
            ordered: list[bytes | None] = []
            for spec in specs:
                if spec.name not in values and spec.name.lower() not in lowered:
                    raise Invalid(f"Missing value for bind variable {spec.name}")
                ordered.append(values.get(spec.name, lowered.get(spec.name.lower())))
            values = ordered
        return decode_values(bind_decoders(specs), values)

    # --- plans -------------------------------------------------------------------------

    def _plan(self, prepared: Prepared) -> InsertPlan | SelectPlan | None:
        """The prepared statement's plan, made again if its table was dropped and re-created."""
        entry = self._plans.get(prepared.id)
        if (
            entry is not None
            and entry.prepared is prepared
            and (entry.key is None or self._data.get(entry.key) is entry.data)
        ):
            return entry.plan
        statement = prepared.statement
        if not prepared.id:
            return None
        if not isinstance(statement, ast.Insert | ast.Select):
            self._plans[prepared.id] = _PlanEntry(prepared, None, None, None)
            return None
        try:
            table = self._table(statement.table, prepared.keyspace)
        except CQLError:
            return None  # the general path says what is wrong
        key = (table.keyspace, table.name)
        data = self._data.get(key)
        if data is None or table.virtual or table.keyspace in self._system:
            self._plans[prepared.id] = _PlanEntry(prepared, None, None, None)
            return None
        plan: InsertPlan | SelectPlan | None
        try:
            if isinstance(statement, ast.Insert):
                plan = InsertPlan.build(statement, table, data, prepared.bind)
            else:
                plan = SelectPlan.build(statement, table, data, prepared.bind)
        except CQLError:
            plan = None
        self._plans[prepared.id] = _PlanEntry(prepared, key, data, plan)
        return plan

    # --- running -----------------------------------------------------------------------

    def _run(
        self,
        statement: ast.Statement,
        keyspace: str | None,
        ctx: Context,
        *,
        page_size: int | None = None,
        paging_state: bytes | None = None,
        timestamp: int | None = None,
        request: object = None,
        in_batch: bool = False,
        user: str | None = None,
    ) -> Result:
        if self.permissions.enabled and not in_batch:
            self._authorize(statement, keyspace, user)
        if isinstance(statement, ast.Select):
            table = self._table(statement.table, keyspace)
            data = self._table_data(table, request)
            restrictions = resolve(table, statement.where, ctx)
            rows = run_select(
                statement,
                table,
                data,
                restrictions,
                ctx,
                page_size=page_size,
                paging_state=paging_state,
            )
            return json_rows(rows) if statement.json else rows
        if isinstance(statement, ast.Insert | ast.Update | ast.Delete):
            return self._modify(statement, keyspace, ctx, timestamp, in_batch)
        if isinstance(statement, ast.Batch):
            stamp = timestamp
            if statement.using.timestamp is not None:
                given = evaluate(statement.using.timestamp, BIGINT, ctx)
                stamp = given if isinstance(given, int) else None
            stamp = stamp if stamp is not None else self._next_timestamp()
            return self._apply_batch(
                [(part, keyspace, ctx) for part in statement.statements], stamp
            )
        if isinstance(statement, ast.Use):
            if self._keyspace(statement.keyspace) is None:
                raise Invalid(f"Keyspace '{statement.keyspace}' does not exist")
            return SetKeyspaceResult(statement.keyspace)
        if isinstance(statement, ast.RoleStatement):
            self.roles.apply(statement)
            role = ast.Resource("role", (statement.name,))
            if statement.action == "create":
                self.permissions.created(user, role)
            elif statement.action == "drop":
                self.permissions.dropped(role)
            return VoidResult()
        if isinstance(statement, ast.GrantRole):
            self.roles.grant(statement)
            return VoidResult()
        if isinstance(statement, ast.Grant):
            grant = ast.Grant(
                statement.action, statement.permissions,
                self._resource(statement.resource, keyspace), statement.role,
            )  # fmt: skip
            self.permissions.apply(grant, user)
            return VoidResult()
        if isinstance(statement, ast.ListPermissions):
            on = statement.resource
            listed = ast.ListPermissions(
                statement.permissions, on and self._resource(on, keyspace), statement.role,
                statement.recursive,
            )  # fmt: skip
            listing = self.permissions.listing(listed, user)
            return VoidResult() if listing is None else listing
        if isinstance(statement, ast.Describe):
            spaces = [*self._system.values(), *self._virtual_keyspaces.values()]
            return describe(statement, [*spaces, *self.keyspaces.values()], keyspace)
        if isinstance(statement, ast.ListRoles):
            listing = self.roles.listing(statement, user, self.permissions.sees_all_roles(user))
            return VoidResult() if listing is None else listing
        if isinstance(statement, ast.Disabled):
            raise Invalid(statement.message)
        if isinstance(statement, ast.Truncate):
            table = self._table(statement.table, keyspace)
            if table.virtual:
                raise Invalid(f"Cannot truncate virtual table {table.keyspace}.{table.name}")
            self._data[(table.keyspace, table.name)].clear()
            return VoidResult()
        change = self._schema_change(statement, keyspace)
        if isinstance(change, SchemaChangeResult) and change.target != "TYPE":
            changed = (
                ast.Resource("keyspace", (change.keyspace,))
                if change.target == "KEYSPACE"
                else ast.Resource("table", (change.keyspace, change.name))
            )
            if change.change_type == "CREATED":
                self.permissions.created(user, changed)
            elif change.change_type == "DROPPED":
                self.permissions.dropped(changed)
        return change

    # --- permissions -------------------------------------------------------------------

    def _resource(self, resource: ast.Resource, keyspace: str | None) -> ast.Resource:
        """The resource with a table's keyspace filled in from the session's."""
        if resource.kind == "table" and resource.names[0] is None:
            if keyspace is None:
                raise Invalid(_NO_KEYSPACE)
            return ast.Resource("table", (keyspace, resource.names[1]))
        return resource

    def _resource_exists(self, resource: ast.Resource) -> bool:
        space = self._keyspace(resource.names[0] or "")
        if resource.kind == "keyspace":
            return space is not None
        return space is not None and resource.names[1] in space.tables

    def _authorize(self, statement: ast.Statement, keyspace: str | None, user: str | None) -> None:
        """Check the permission Cassandra checks before it runs this statement."""
        check = self.permissions.check

        def table(name: ast.TableName) -> ast.Resource:
            return self._resource(ast.Resource("table", (name.keyspace, name.name)), keyspace)

        def space(name: str | None) -> ast.Resource:
            if (name or keyspace) is None:
                raise Invalid(_NO_KEYSPACE)
            return ast.Resource("keyspace", (name or keyspace,))

        if isinstance(statement, ast.Select):
            check(user, "SELECT", table(statement.table))
        elif isinstance(statement, ast.Insert | ast.Update | ast.Delete | ast.Truncate):
            check(user, "MODIFY", table(statement.table))
        elif isinstance(statement, ast.Batch):
            for part in statement.statements:
                check(user, "MODIFY", table(part.table))
        elif isinstance(statement, ast.CreateKeyspace):
            check(user, "CREATE", ast.Resource("data"))
        elif isinstance(statement, ast.AlterKeyspace):
            check(user, "ALTER", space(statement.name))
        elif isinstance(statement, ast.DropKeyspace):
            check(user, "DROP", space(statement.name))
        elif isinstance(statement, ast.CreateTable):
            check(user, "CREATE", space(statement.table.keyspace))
        elif isinstance(statement, ast.AlterTable | ast.CreateIndex):
            check(user, "ALTER", table(statement.table))
        elif isinstance(statement, ast.DropTable):
            check(user, "DROP", table(statement.table))
        elif isinstance(statement, ast.CreateType):
            check(user, "CREATE", space(statement.keyspace))
        elif isinstance(statement, ast.AlterType | ast.DropIndex):
            check(user, "ALTER", space(statement.keyspace))
        elif isinstance(statement, ast.DropType):
            check(user, "DROP", space(statement.keyspace))
        elif isinstance(statement, ast.GrantRole):
            check(user, "AUTHORIZE", ast.Resource("role", (statement.role,)))
        elif isinstance(statement, ast.RoleStatement):
            if statement.action == "create":
                check(user, "CREATE", ast.Resource("roles"))
            elif statement.action == "drop":
                check(user, "DROP", ast.Resource("role", (statement.name,)))
            elif statement.name != user or set(statement.options) - {"password"}:
                check(user, "ALTER", ast.Resource("role", (statement.name,)))  # own password: free

    def _apply_batch(
        self, parts: list[tuple[ast.Statement, str | None, Context]], stamp: int
    ) -> VoidResult | RowsResult:
        writes: list[tuple[ast.Insert | ast.Update | ast.Delete, str | None, Context]] = []
        for statement, space, ctx in parts:
            if not isinstance(statement, ast.Insert | ast.Update | ast.Delete):
                raise Invalid("Only INSERT, UPDATE and DELETE statements are allowed in a BATCH")
            writes.append((statement, space, ctx))
        if not any(_conditional(w) for w, _, _ in writes):
            for statement, space, ctx in writes:
                self._modify(statement, space, ctx, stamp, True)
            return VoidResult()
        checks = [self._batch_check(statement, space, ctx) for statement, space, ctx in writes]
        if len({(c.table.keyspace, c.table.name) for c in checks}) > 1:
            raise Invalid("Batch with conditions cannot span multiple tables")
        if len({c.partition_bytes for c in checks}) > 1:
            raise Invalid("Batch with conditions cannot span multiple partitions")
        if all(c.holds for c in checks):
            for statement, space, ctx in writes:
                self._modify(statement, space, ctx, stamp, True, checked=True)
            return _applied_rows(checks[0].table, [], True)
        return _applied_rows(checks[0].table, checks, False)

    def _batch_check(
        self, statement: ast.Insert | ast.Update | ast.Delete, space: str | None, ctx: Context
    ) -> _BatchCheck:
        """Which row a batch statement writes, and whether its condition (if any) holds."""
        table = self._table(statement.table, space)
        data = self._data[(table.keyspace, table.name)]
        now = self.clock()
        if isinstance(statement, ast.Insert):
            if statement.json is not None:
                statement = expand_json_insert(statement, table, ctx)
            values = {
                name: evaluate(term, column_of(table, name).type, ctx, name)
                for name, term in zip(statement.columns, statement.values, strict=False)
            }
            missing = [c.name for c in table.partition_key if c.name not in values]
            if missing:
                raise Invalid(f"Some partition key parts are missing: {', '.join(missing)}")
            key = tuple(values[c.name] for c in table.partition_key)
            clustering = tuple(values.get(c.name) for c in table.clustering)
            partition, row = conditions.target(table, data, [key], [clustering])
            exists = row is not None and row.alive(now)
            shown = row_values(data, partition, row, now) if exists and partition and row else None
            holds = not (statement.if_not_exists and exists)
            return _BatchCheck(table, data.key_bytes(key), key, clustering, holds, shown)
        restrictions = resolve(table, statement.where, ctx)
        keys = restrictions.partition_keys(table)
        if keys is None:
            missing = [c.name for c in table.partition_key if c.name not in restrictions.equal]
            raise Invalid(f"Some partition key parts are missing: {', '.join(missing)}")
        clusterings = None
        if table.clustering and all(c.name in restrictions.equal for c in table.clustering):
            choices = [restrictions.equal[c.name] for c in table.clustering]
            clusterings = [tuple(p) for p in itertools.product(*choices)]
        if not _conditional(statement):
            return _BatchCheck(table, data.key_bytes(keys[0]), keys[0], None, True, None)
        if isinstance(statement, ast.Delete):
            check_conditional_delete(statement, table, clusterings)
        partition, row = conditions.target(table, data, keys, clusterings or None)
        holds, shown = conditions.check(statement, table, partition, row, ctx, now)
        return _BatchCheck(
            table, data.key_bytes(keys[0]), keys[0], clusterings[0] if clusterings else None,
            holds, shown,
        )  # fmt: skip

    def _modify(
        self,
        statement: ast.Insert | ast.Update | ast.Delete,
        keyspace: str | None,
        ctx: Context,
        timestamp: int | None,
        in_batch: bool,
        checked: bool = False,
    ) -> Result:
        table = self._table(statement.table, keyspace)
        if table.virtual or table.keyspace in self._system:
            raise Invalid(f"{table.keyspace} keyspace is not user-modifiable.")
        data = self._data[(table.keyspace, table.name)]
        stamp = timestamp
        if statement.using.timestamp is not None:
            given = evaluate(statement.using.timestamp, BIGINT, ctx)
            if given is UNSET:
                given = self._next_timestamp()
            if not isinstance(given, int):
                raise Invalid("Invalid null value of timestamp")
            stamp = given
        if stamp is None:
            stamp = self._next_timestamp()
        ttl = ttl_of(statement.using, table, ctx) if not isinstance(statement, ast.Delete) else None
        if isinstance(statement, ast.Delete) and statement.using.ttl is not None:
            raise Invalid("Cannot provide custom TTL for DELETE statements")
        options = WriteOptions(stamp, ttl, self.clock())
        result: RowsResult | None
        if isinstance(statement, ast.Insert):
            result = insert(statement, table, data, ctx, options, checked)
        else:
            restrictions = resolve(table, statement.where, ctx)
            if isinstance(statement, ast.Update):
                result = update(statement, table, data, restrictions, ctx, options, checked)
            else:
                result = delete(statement, table, data, restrictions, ctx, options, checked)
        return result if result is not None else VoidResult()

    def _next_timestamp(self) -> int:
        """Microseconds from the clock, strictly increasing so later writes always win."""
        now = int(self.clock() * 1_000_000)
        self._last_timestamp = max(now, self._last_timestamp + 1)
        return self._last_timestamp

    # --- schema ---------------------------------------------------------------------------

    def _keyspace(self, name: str) -> Keyspace | None:
        return (
            self.keyspaces.get(name) or self._system.get(name) or self._virtual_keyspaces.get(name)
        )

    def _table(self, name: ast.TableName, keyspace: str | None) -> Table:
        space_name = name.keyspace or keyspace
        if space_name is None:
            raise Invalid(_NO_KEYSPACE)
        space = self._keyspace(space_name)
        if space is None:
            raise Invalid(f"Keyspace '{space_name}' does not exist")
        table = space.tables.get(name.name)
        if table is None:
            raise Invalid(f"unconfigured table {name.name}")
        return table

    def _table_data(self, table: Table, request: object) -> TableData:
        if not table.virtual:
            return self._data[(table.keyspace, table.name)]
        data = TableData(table)
        for raw in self._virtual_rows[(table.keyspace, table.name)](request):
            values = {c.name: _normalize(c, raw.get(c.name)) for c in table.columns}
            key = tuple(values[c.name] for c in table.partition_key)
            clustering = tuple(values[c.name] for c in table.clustering)
            partition = data.partition(key)
            row = partition.row(clustering, data.clustering_key(clustering))
            options = WriteOptions(0, None, 0.0)
            row.set_marker(options.cell(None))
            for column in table.columns:
                value = values[column.name]
                if value is None:
                    continue
                if column.kind == "regular":
                    row.put(column.slot, options.cell(value))
                elif column.kind == "static":
                    partition.static_row().put(column.slot, options.cell(value))
            row.settle()
        return data

    def _schema_change(self, statement: ast.Statement, keyspace: str | None) -> Result:
        change: SchemaChangeResult | None
        if isinstance(statement, ast.CreateKeyspace):
            change = self._create_keyspace(statement)
        elif isinstance(statement, ast.DropKeyspace):
            change = self._drop_keyspace(statement)
        elif isinstance(statement, ast.CreateTable):
            change = self._create_table(statement, keyspace)
        elif isinstance(statement, ast.DropTable):
            change = self._drop_table(statement, keyspace)
        elif isinstance(statement, ast.AlterTable):
            change = self._alter_table(statement, keyspace)
        elif isinstance(statement, ast.AlterKeyspace):
            change = self._alter_keyspace(statement)
        elif isinstance(statement, ast.CreateType | ast.DropType | ast.AlterType):
            change = self._user_type_change(statement, keyspace)
        elif isinstance(statement, ast.CreateIndex):
            change = self._create_index(statement, keyspace)
        elif isinstance(statement, ast.DropIndex):
            change = self._drop_index(statement, keyspace)
        else:
            raise Invalid(f"Unsupported statement {type(statement).__name__}")
        if change is None:
            return VoidResult()
        self.schema_version = uuid.uuid4()
        for listener in list(self._listeners):
            listener(change)
        return change

    def _create_keyspace(self, statement: ast.CreateKeyspace) -> SchemaChangeResult | None:
        name = statement.name
        if not name or len(name) > 48 or not name.replace("_", "").isalnum():
            raise Invalid(
                "Keyspace name must not be empty, more than 48 characters long, or contain "
                f"non-alphanumeric-underscore characters (got '{name}')"
            )
        if self._keyspace(name) is not None:
            if statement.if_not_exists:
                return None
            raise AlreadyExists(name)
        replication = statement.options.get("replication")
        if not isinstance(replication, dict) or "class" not in replication:
            raise Invalid("Missing mandatory option 'replication' with a 'class'")
        durable = statement.options.get("durable_writes", True)
        if not isinstance(durable, bool):
            durable = str(durable).lower() == "true"
        for option in statement.options:
            if option not in ("replication", "durable_writes"):
                raise Invalid(f"Unknown property '{option}'")
        self.keyspaces[name] = Keyspace(name, normalize_replication(replication), durable)
        return SchemaChangeResult("CREATED", "KEYSPACE", name)

    def _drop_keyspace(self, statement: ast.DropKeyspace) -> SchemaChangeResult | None:
        name = statement.name
        if name in self._system or name in self._virtual_keyspaces:
            raise Invalid(f"{name} keyspace is not user-modifiable.")
        space = self.keyspaces.pop(name, None)
        if space is None:
            if statement.if_exists:
                return None
            raise Invalid(f"Keyspace '{name}' doesn't exist")
        for table in space.tables.values():
            self._forget_table(table)
        return SchemaChangeResult("DROPPED", "KEYSPACE", name)

    def _user_keyspace(
        self, name: ast.TableName, keyspace: str | None
    ) -> tuple[str, Keyspace | None]:
        """The user keyspace a table name is in (None if absent); system keyspaces are refused."""
        space_name = name.keyspace or keyspace
        if space_name is None:
            raise Invalid(_NO_KEYSPACE)
        space = self.keyspaces.get(space_name)
        if space is None and self._keyspace(space_name) is not None:
            raise Invalid(f"{space_name} keyspace is not user-modifiable.")
        return space_name, space

    def _create_table(
        self, statement: ast.CreateTable, keyspace: str | None
    ) -> SchemaChangeResult | None:
        space_name, space = self._user_keyspace(statement.table, keyspace)
        if space is None:
            raise Invalid(f"Keyspace '{space_name}' does not exist")
        name = statement.table.name
        if name in space.tables:
            if statement.if_not_exists:
                return None
            raise AlreadyExists(space_name, name)
        table = _build_table(space_name, statement, space.types)
        space.tables[name] = table
        self._data[(space_name, name)] = TableData(table)
        return SchemaChangeResult("CREATED", "TABLE", space_name, name)

    def _drop_table(
        self, statement: ast.DropTable, keyspace: str | None
    ) -> SchemaChangeResult | None:
        space_name, space = self._user_keyspace(statement.table, keyspace)
        if space is None:
            if statement.if_exists:
                return None
            raise Invalid(f"Keyspace '{space_name}' does not exist")
        table = space.tables.pop(statement.table.name, None)
        if table is None:
            if statement.if_exists:
                return None
            raise Invalid(f"Table '{space_name}.{statement.table.name}' doesn't exist")
        self._forget_table(table)
        return SchemaChangeResult("DROPPED", "TABLE", space_name, table.name)

    def _user_table(
        self, name: ast.TableName, keyspace: str | None, if_exists: bool
    ) -> Table | None:
        space_name, space = self._user_keyspace(name, keyspace)
        if space is None:
            raise Invalid(f"Keyspace '{space_name}' doesn't exist")
        table = space.tables.get(name.name)
        if table is None and not if_exists:
            raise Invalid(f"Table '{space_name}.{name.name}' doesn't exist")
        return table

    def _alter_table(
        self, statement: ast.AlterTable, keyspace: str | None
    ) -> SchemaChangeResult | None:
        table = self._user_table(statement.table, keyspace, statement.if_exists)
        if table is None:
            return None
        if statement.action == "with":
            unknown = [k for k in statement.options if k not in TABLE_OPTION_DEFAULTS]
            if unknown:
                raise CQLSyntaxError(f"Unknown property '{unknown[0]}'")
            table.options.update(normalize_table_options(statement.options))
            return SchemaChangeResult("UPDATED", "TABLE", table.keyspace, table.name)
        if statement.action == "add":
            _add_columns(
                table, statement.added, statement.if_column, self.keyspaces[table.keyspace].types
            )
        elif statement.action == "drop":
            slots = [c.slot for c in table.columns if c.name in statement.dropped]
            _drop_columns(table, statement.dropped, statement.if_column)
            self._data[(table.keyspace, table.name)].forget_columns(slots)
        else:
            _rename_columns(table, statement.renamed, statement.if_column)
        # As Cassandra: statements on the table are prepared again (their
        # columns changed), so each node answers UNPREPARED next time.
        self._forget_prepared_on(table)
        return SchemaChangeResult("UPDATED", "TABLE", table.keyspace, table.name)

    def _alter_keyspace(self, statement: ast.AlterKeyspace) -> SchemaChangeResult | None:
        name = statement.name
        if name in self._system or name in self._virtual_keyspaces:
            raise Invalid(f"{name} keyspace is not user-modifiable.")
        space = self.keyspaces.get(name)
        if space is None:
            if statement.if_exists:
                return None
            raise Invalid(f"Keyspace '{name}' doesn't exist")
        for option in statement.options:
            if option not in ("replication", "durable_writes"):
                raise CQLSyntaxError(f"Unknown property '{option}'")
        replication = statement.options.get("replication")
        if replication is not None:
            if not isinstance(replication, dict) or "class" not in replication:
                raise ConfigurationError("Missing replication strategy class")
            space.replication = normalize_replication(replication)
        if "durable_writes" in statement.options:
            durable = statement.options["durable_writes"]
            space.durable_writes = (
                durable if isinstance(durable, bool) else (str(durable).lower() == "true")
            )
        return SchemaChangeResult("UPDATED", "KEYSPACE", name)

    def _user_type_change(
        self, statement: ast.CreateType | ast.DropType | ast.AlterType, keyspace: str | None
    ) -> SchemaChangeResult | None:
        space_name, space = self._user_keyspace(ast.TableName(statement.keyspace, ""), keyspace)
        if space is None:
            raise Invalid(f"Keyspace '{space_name}' doesn't exist")
        name = statement.name
        existing = space.types.get(name)
        if isinstance(statement, ast.CreateType):
            if existing is not None:
                if statement.if_not_exists:
                    return None
                raise AlreadyExists(space_name, name, what="user type")
            if native_type(name) is not None or name in ("list", "set", "map", "tuple", "frozen"):
                raise Invalid(f"Type name {name} is reserved")
            names = [field for field, _ in statement.fields]
            if len(set(names)) != len(names):
                raise Invalid(f"Duplicate field name in type {name}")
            fields = [(field, parse_type(text, space.types)) for field, text in statement.fields]
            space.types[name] = UserType(space_name, name, fields)
            return SchemaChangeResult("CREATED", "TYPE", space_name, name)
        if existing is None:
            if isinstance(statement, ast.DropType) and statement.if_exists:
                return None
            raise Invalid(f"Unknown user type {space_name}.{name}")
        if isinstance(statement, ast.DropType):
            for table in space.tables.values():
                if any(_uses_type(c.type, existing) for c in table.columns):
                    raise Invalid(
                        f"Cannot drop user type {space_name}.{name} as it is still used by "
                        f"table {space_name}.{table.name}"
                    )
            del space.types[name]
            return SchemaChangeResult("DROPPED", "TYPE", space_name, name)
        for field, text in statement.added:
            if any(f == field for f, _ in existing.fields):
                raise Invalid(
                    f"Cannot add new field {field} to type {space_name}.{name}: "
                    "a field of the same name already exists"
                )
            existing.fields.append((field, parse_type(text, space.types)))
        for old, new in statement.renamed:
            index = next((i for i, (f, _) in enumerate(existing.fields) if f == old), None)
            if index is None:
                raise Invalid(f"Unkown field {old} in user type {space_name}.{name}")
            existing.fields[index] = (new, existing.fields[index][1])
        return SchemaChangeResult("UPDATED", "TYPE", space_name, name)

    def _create_index(
        self, statement: ast.CreateIndex, keyspace: str | None
    ) -> SchemaChangeResult | None:
        table = self._user_table(statement.table, keyspace, False)
        assert table is not None
        column = column_of(table, statement.column)
        if column.kind == "partition_key" and len(table.partition_key) == 1:
            raise Invalid(
                f"Cannot create secondary index on the only partition key column {column.name}"
            )
        target = (
            column.name
            if statement.target in (None, "values")
            else (f"{statement.target}({column.name})")
        )
        if statement.target is not None and not isinstance(column.type, CollectionType):
            raise Invalid(
                f"Cannot create {statement.target}() index on {column.name}. "
                "Non-collection columns only support simple indexes"
            )
        name = statement.name or f"{table.name}_{column.name}_idx"
        space = self.keyspaces[table.keyspace]
        taken = {i for t in space.tables.values() for i in t.indexes}
        if name in taken or (column.name, target) in table.indexes.values():
            if statement.if_not_exists:
                return None
            if name in taken:
                raise Invalid(f"Index '{name}' already exists")
            raise Invalid(f"Index {name} is a duplicate of an existing index")
        table.indexes[name] = (column.name, target)
        self._forget_prepared_on(table)  # queries it allows may now be prepared
        return SchemaChangeResult("UPDATED", "TABLE", table.keyspace, table.name)

    def _drop_index(
        self, statement: ast.DropIndex, keyspace: str | None
    ) -> SchemaChangeResult | None:
        space_name, space = self._user_keyspace(ast.TableName(statement.keyspace, ""), keyspace)
        for table in space.tables.values() if space is not None else ():
            if statement.name in table.indexes:
                del table.indexes[statement.name]
                self._forget_prepared_on(table)
                return SchemaChangeResult("UPDATED", "TABLE", table.keyspace, table.name)
        if statement.if_exists:
            return None
        raise Invalid(
            f"Index '{statement.name}' could not be found in any of the tables of "
            f"keyspace '{space_name}'"
        )

    def _forget_prepared_on(self, table: Table) -> None:
        key = (table.keyspace, table.name)
        self._prepared = {i: p for i, p in self._prepared.items() if key not in p.tables}
        self._plans = {i: e for i, e in self._plans.items() if e.key != key}

    def _forget_table(self, table: Table) -> None:
        """Drop a table's data and the prepared statements that read or write it."""
        self._data.pop((table.keyspace, table.name), None)
        key = (table.keyspace, table.name)
        self._prepared = {i: p for i, p in self._prepared.items() if key not in p.tables}
        self._plans = {i: e for i, e in self._plans.items() if e.key != key}

    def _register_schema_tables(self) -> None:
        def user_and_system() -> list[Keyspace]:
            return [*self._system.values(), *self.keyspaces.values()]

        producers: dict[str, Callable[[], list[dict[str, object]]]] = {
            "keyspaces": lambda: keyspace_rows(user_and_system()),
            "tables": lambda: table_rows(user_and_system()),
            "columns": lambda: column_rows(user_and_system()),
            "types": lambda: type_rows(user_and_system()),
            "indexes": lambda: index_rows(user_and_system()),
        }
        for name, columns in SYSTEM_SCHEMA_TABLES.items():
            produce = producers.get(name, list)
            self.register_virtual_table("system_schema", name, columns, _ignore_context(produce))
        self.register_virtual_table(
            "system_auth", "roles",
            [("role", "text", "partition_key"), ("can_login", "boolean", "regular"),
             ("is_superuser", "boolean", "regular"), ("member_of", "set<text>", "regular"),
             ("salted_hash", "text", "regular")],
            lambda _context: self.roles.rows(),
        )  # fmt: skip
        virtual = self._virtual_keyspaces["system_virtual_schema"]
        for name, columns in SYSTEM_VIRTUAL_SCHEMA_TABLES.items():
            virtual.tables[name] = make_table("system_virtual_schema", name, columns, virtual=True)
        virtual_producers: dict[str, Callable[[], list[dict[str, object]]]] = {
            "keyspaces": lambda: [{"keyspace_name": ks} for ks in self._virtual_keyspaces],
            "tables": lambda: [
                {"keyspace_name": t.keyspace, "table_name": t.name, "comment": ""}
                for ks in self._virtual_keyspaces.values() for t in ks.tables.values()
            ],
            "columns": lambda: column_rows(list(self._virtual_keyspaces.values())),
        }  # fmt: skip
        for name, produce in virtual_producers.items():
            self._virtual_rows[("system_virtual_schema", name)] = _ignore_context(produce)


def _json_insert(statement: ast.Statement) -> bool:
    return isinstance(statement, ast.Insert) and statement.json is not None


def _conditional(statement: ast.Insert | ast.Update | ast.Delete) -> bool:
    if isinstance(statement, ast.Insert):
        return statement.if_not_exists
    return statement.if_exists or bool(statement.conditions)


@dataclass(frozen=True, slots=True)
class _BatchCheck:
    """One statement of a conditional batch: its row, and how its condition came out."""

    table: Table
    partition_bytes: bytes
    key: tuple[object, ...]
    clustering: tuple[object, ...] | None
    holds: bool
    shown: list[tuple[Column, object]] | None  # the row's values to show, None: absent


def _applied_rows(table: Table, checks: list[_BatchCheck], applied: bool) -> RowsResult:
    """A conditional batch's answer: ``[applied]``, then a row per existing checked row."""
    existing = [c for c in checks if c.shown is not None]
    if applied or not existing:
        return applied_result(table, applied)
    columns: list[Column] = [*table.partition_key, *table.clustering]
    for check in existing:
        for column, _ in check.shown or []:
            if all(c is not column for c in columns):
                columns.append(column)
    specs = [ColumnSpec(table.keyspace, table.name, "[applied]", BOOLEAN)]
    specs += [ColumnSpec(table.keyspace, table.name, c.name, c.type) for c in columns]
    rows: list[list[bytes | None]] = []
    for check in existing:
        values: dict[str, object] = {c.name: v for c, v in check.shown or []}
        for column in table.partition_key:
            values[column.name] = check.key[column.position]
        for column in table.clustering:
            if check.clustering is not None:
                values[column.name] = check.clustering[column.position]
        row: list[bytes | None] = [BOOLEAN.serialize(False)]
        for column in columns:
            value = values.get(column.name)
            row.append(None if value is None else column.type.serialize(value))
        rows.append(row)
    return RowsResult(specs, rows, None)


@dataclass(frozen=True, slots=True)
class _PlanEntry:
    """A plan, good while its statement and its table's data are the ones it was made for."""

    prepared: Prepared
    key: tuple[str, str] | None  # None: a statement no plan is made for, whatever the schema
    data: TableData | None
    plan: InsertPlan | SelectPlan | None


def _ignore_context(produce: Callable[[], list[dict[str, object]]]) -> VirtualRows:
    return lambda _context: produce()


def _normalize(column: Column, value: object) -> object:
    """A virtual table's Python value in the engine's convention (dicts and sets allowed)."""
    if value is None or not isinstance(column.type, CollectionType):
        return value
    if isinstance(value, dict):
        value = list(value.items())
    assert isinstance(value, list | tuple | set | frozenset)
    items = column.type.normalize(list(value))
    return items or None


def _receive_assignment(
    receivers: Receivers, table: Table, column: Column, assignment: ast.Assignment
) -> None:
    cql_type = column.type
    if assignment.op == "field":
        receivers.term(
            assignment.value,
            receivers.spec(
                table, f"{column.name}.{assignment.field}", udt_field(column, assignment)
            ),
        )
        return
    if assignment.op == "index":
        assert assignment.key is not None
        if isinstance(cql_type, MapType):
            receivers.term(
                assignment.key, receivers.spec(table, f"key({column.name})", cql_type.key)
            )
            receivers.term(
                assignment.value, receivers.spec(table, f"value({column.name})", cql_type.value)
            )
        elif isinstance(cql_type, ListType):
            receivers.term(assignment.key, receivers.spec(table, f"idx({column.name})", INT))
            receivers.term(
                assignment.value, receivers.spec(table, f"value({column.name})", cql_type.element)
            )
        else:
            raise Invalid(
                f"Invalid operation ({column.name}[?] = ?) for non list/map column {column.name}"
            )
        return
    if assignment.op == "-" and isinstance(cql_type, MapType):
        receivers.term(
            assignment.value, receivers.spec(table, column.name, SetType(cql_type.key, True))
        )
        return
    receivers.column(assignment.value, table, column)


def _pk_indexes(part: ast.Select | ast.Insert | ast.Update | ast.Delete, table: Table) -> list[int]:
    """Bind indexes of the partition key columns, when every one of them is a plain marker."""
    found: dict[str, int] = {}
    if isinstance(part, ast.Insert):
        for name, term in zip(part.columns, part.values, strict=False):
            if isinstance(term, ast.BindMarker):
                found[name] = term.index
    else:
        for relation in part.where:
            if (
                relation.op == "="
                and not relation.token
                and isinstance(relation.value, ast.BindMarker)
            ):
                found[relation.column] = relation.value.index
    indexes = [found.get(c.name) for c in table.partition_key]
    if any(i is None for i in indexes):
        return []
    # Bind indexes count only markers, which is what the spec's pk_indexes are.
    return [i for i in indexes if i is not None]


def _count_markers(statement: ast.Statement) -> int:
    """How many markers the parser numbered: the highest index seen, plus one."""
    highest = -1

    def visit(node: object) -> None:
        nonlocal highest
        if isinstance(node, ast.BindMarker):
            highest = max(highest, node.index)
        elif isinstance(node, tuple | list):
            for item in node:
                visit(item)
        elif hasattr(node, "__dataclass_fields__"):
            for name in node.__dataclass_fields__:
                visit(getattr(node, name))

    visit(statement)
    return highest + 1


def _build_table(keyspace: str, statement: ast.CreateTable, user_types: UserTypes) -> Table:
    names: set[str] = set()
    for definition in statement.columns:
        if definition.name in names:
            raise Invalid(
                f"Duplicate column '{definition.name}' declaration for table "
                f"'{keyspace}.{statement.table.name}'"
            )
        names.add(definition.name)
    partition_key = list(statement.partition_key)
    if not partition_key:
        raise Invalid(
            f"No PRIMARY KEY specifed for table '{statement.table.name}' (exactly one required)"
        )
    for name in (*partition_key, *statement.clustering):
        if name not in names:
            raise Invalid(f"Unknown definition {name} referenced in PRIMARY KEY")
    if len(set(partition_key) | set(statement.clustering)) != len(partition_key) + len(
        statement.clustering
    ):
        raise Invalid("Duplicate column in PRIMARY KEY")
    order = dict(statement.clustering_order)
    if [n for n, _ in statement.clustering_order] != list(statement.clustering[: len(order)]):
        raise Invalid("Only clustering key columns can be defined in CLUSTERING ORDER directive")
    triples: list[tuple[str, str, str]] = []
    definitions = {d.name: d for d in statement.columns}
    has_counter = False
    for name in partition_key:
        triples.append((name, definitions[name].type, "partition_key"))
    for name in statement.clustering:
        triples.append((name, definitions[name].type, "clustering"))
    for definition in statement.columns:
        cql_type = parse_type(definition.type, user_types)
        key_part = definition.name in partition_key or definition.name in statement.clustering
        if key_part:
            if definition.static:
                raise Invalid(f"Static column {definition.name} cannot be part of the PRIMARY KEY")
            if isinstance(cql_type, CollectionType) and not cql_type.frozen:
                raise Invalid(
                    "Invalid non-frozen collection type for PRIMARY KEY component "
                    f"{definition.name}"
                )
            if isinstance(cql_type, UserType) and not cql_type.frozen:
                raise Invalid(
                    "Invalid non-frozen user-defined type for PRIMARY KEY component "
                    f"{definition.name}"
                )
            if cql_type is DURATION:
                raise Invalid(
                    f"duration type is not supported for PRIMARY KEY column '{definition.name}'"
                )
            if cql_type.name == "counter":
                raise Invalid(
                    f"counter type is not supported for PRIMARY KEY column '{definition.name}'"
                )
            continue
        if definition.static and not statement.clustering:
            raise Invalid(
                "Static columns are only useful (and thus allowed) if the table has at least "
                "one clustering column"
            )
        has_counter = has_counter or cql_type.name == "counter"
        triples.append(
            (definition.name, definition.type, "static" if definition.static else "regular")
        )
    regular = [t for t in triples if t[2] in ("regular", "static")]
    if has_counter and any(parse_type(t[1], user_types).name != "counter" for t in regular):
        raise Invalid("Cannot mix counter and non counter columns in the same table")
    options = normalize_table_options(
        {k: v for k, v in statement.options.items() if k in TABLE_OPTION_DEFAULTS}
    )
    table = make_table(
        keyspace, statement.table.name, triples, clustering_order=order, options=options,
        user_types=user_types,
    )  # fmt: skip
    # Keep the definition order for Table.columns (system_schema lists by name anyway).
    by_name = {c.name: c for c in table.columns}
    table.columns = [by_name[d.name] for d in statement.columns]
    return table


def _uses_type(cql_type: CQLType, user_type: UserType) -> bool:
    if isinstance(cql_type, UserType):
        return cql_type.type_name == user_type.type_name or any(
            _uses_type(t, user_type) for t in cql_type.field_types
        )
    if isinstance(cql_type, TupleType):
        return any(_uses_type(t, user_type) for t in cql_type.elements)
    if isinstance(cql_type, ListType | SetType):
        return _uses_type(cql_type.element, user_type)
    if isinstance(cql_type, MapType):
        return _uses_type(cql_type.key, user_type) or _uses_type(cql_type.value, user_type)
    return False


def _add_columns(
    table: Table, added: tuple[ast.ColumnDefinition, ...], if_not_exists: bool,
    user_types: UserTypes,
) -> None:  # fmt: skip
    fresh: list[Column] = []
    for definition in added:
        if table.column(definition.name) is not None or any(
            c.name == definition.name for c in fresh
        ):
            if if_not_exists:
                continue
            raise Invalid(f"Column with name '{definition.name}' already exists")
        cql_type = parse_type(definition.type, user_types)
        if definition.static and not table.clustering:
            raise Invalid(
                "Static columns are only useful (and thus allowed) if the table has at least "
                "one clustering column"
            )
        counters = [
            c.type.name == "counter" for c in table.columns if c.kind in ("regular", "static")
        ]
        if counters and all(counters) != (cql_type.name == "counter"):
            raise Invalid("Cannot mix counter and non counter columns in the same table")
        kind: ColumnKind = "static" if definition.static else "regular"
        fresh.append(Column(definition.name, cql_type, kind, -1))
    table.columns.extend(fresh)
    table.reindex()


def _drop_columns(table: Table, dropped: tuple[str, ...], if_exists: bool) -> None:
    for name in dropped:
        column = table.column(name)
        if column is None:
            if if_exists:
                continue
            raise Invalid(f"Column {name} was not found in table {table.keyspace}.{table.name}")
        if column.kind in ("partition_key", "clustering"):
            raise Invalid(f"Cannot drop PRIMARY KEY column {name}")
    table.columns = [c for c in table.columns if c.name not in dropped]
    table.reindex()


def _rename_columns(table: Table, renamed: tuple[tuple[str, str], ...], if_exists: bool) -> None:
    for old, new in renamed:
        column = table.column(old)
        if column is None:
            if if_exists:
                continue
            raise Invalid(f"Column {old} was not found in table {table.keyspace}.{table.name}")
        if column.kind not in ("partition_key", "clustering"):
            raise Invalid(f"Cannot rename non PRIMARY KEY column {old}")
        if table.column(new) is not None:
            raise Invalid(
                f"Cannot rename column {old} to {new} in table '{table.name}'; "
                "another column with that name already exists"
            )
        column.name = new  # key values are stored by position, not by name
        table.reindex()
