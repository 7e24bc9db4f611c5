"""Permissions as CassandraAuthorizer keeps them: GRANT, REVOKE, LIST PERMISSIONS, and the
check each statement passes before it runs.

Resources are named as Cassandra prints them (``<all keyspaces>``, ``<keyspace ks>``,
``<table ks.t>``, ``<all roles>``, ``<role r>``); a permission on a resource covers its
children. Superusers may do anything; a role that creates a keyspace, table or role is
given every permission on it, as Cassandra does. Off (AllowAllAuthorizer, Cassandra's
default) unless the server is started with ``authorizer="CassandraAuthorizer"``.
"""

from __future__ import annotations

from collections.abc import Callable

from . import _ast as ast
from ._errors import Invalid, Unauthorized
from ._results import ColumnSpec, RowsResult
from ._roles import Roles
from ._types import TEXT

AUTHORIZER = "org.apache.cassandra.auth.CassandraAuthorizer"
# The order Cassandra lists them in (its Permission enum).
ALL_PERMISSIONS = ("CREATE", "ALTER", "DROP", "SELECT", "MODIFY", "AUTHORIZE", "DESCRIBE")
# Which permissions each kind of resource takes.
_APPLICABLE = {
    "data": ("CREATE", "ALTER", "DROP", "SELECT", "MODIFY", "AUTHORIZE"),
    "keyspace": ("CREATE", "ALTER", "DROP", "SELECT", "MODIFY", "AUTHORIZE"),
    "table": ("ALTER", "DROP", "SELECT", "MODIFY", "AUTHORIZE"),
    "roles": ("CREATE", "ALTER", "DROP", "AUTHORIZE", "DESCRIBE"),
    "role": ("ALTER", "DROP", "AUTHORIZE"),
}
# Keyspaces every logged-in role may read: what drivers and cqlsh read on connect.
_READABLE = frozenset(
    {"system", "system_schema", "system_traces", "system_views", "system_virtual_schema"}
)


def resource_name(resource: ast.Resource) -> str:
    kind, names = resource.kind, resource.names
    if kind == "data":
        return "<all keyspaces>"
    if kind == "keyspace":
        return f"<keyspace {names[0]}>"
    if kind == "table":
        return f"<table {names[0]}.{names[1]}>"
    if kind == "roles":
        return "<all roles>"
    return f"<role {names[0]}>"


def _parents(resource: ast.Resource) -> list[ast.Resource]:
    """The resource and the ones above it, nearest first."""
    if resource.kind == "table":
        return [resource, ast.Resource("keyspace", resource.names[:1]), ast.Resource("data")]
    if resource.kind == "keyspace":
        return [resource, ast.Resource("data")]
    if resource.kind == "role":
        return [resource, ast.Resource("roles")]
    return [resource]


class Permissions:
    """Who may do what on which resource (``system_auth.role_permissions``)."""

    def __init__(self, roles: Roles, exists: Callable[[ast.Resource], bool]) -> None:
        self.roles = roles
        self.exists = exists  # whether the schema has a keyspace or table resource
        self.enabled = False  # CassandraAuthorizer when True, AllowAllAuthorizer when False
        self._granted: dict[str, dict[ast.Resource, set[str]]] = {}

    def _is_superuser(self, user: str | None) -> bool:
        return self.roles.is_superuser(user)

    def _held(self, user: str | None, resource: ast.Resource) -> set[str]:
        """What ``user`` (through its own roles too) holds on the resource and its parents."""
        held: set[str] = set()
        for role in self.roles.of(user) if user is not None else ():
            granted = self._granted.get(role, {})
            for parent in _parents(resource):
                held |= granted.get(parent, set())
        return held

    def sees_all_roles(self, user: str | None) -> bool:
        """Whether LIST ROLES shows ``user`` every role (DESCRIBE on all roles)."""
        return (
            not self.enabled
            or self._is_superuser(user)
            or ("DESCRIBE" in self._held(user, ast.Resource("roles")))
        )

    def check(self, user: str | None, permission: str, resource: ast.Resource) -> None:
        """Raise Unauthorized unless ``user`` holds ``permission`` on the resource or a parent."""
        if not self.enabled or self._is_superuser(user):
            return
        if permission == "SELECT" and resource.names and resource.names[0] in _READABLE:
            return
        if permission in self._held(user, resource):
            return
        raise Unauthorized(
            f"User {user} has no {permission} permission on {resource_name(resource)} "
            "or any of its parents"
        )

    def created(self, user: str | None, resource: ast.Resource) -> None:
        """The creator of a keyspace, table or role gets every permission on it."""
        if self.enabled and user is not None and not self._is_superuser(user):
            self._granted.setdefault(user, {})[resource] = set(_APPLICABLE[resource.kind])

    def dropped(self, resource: ast.Resource) -> None:
        """A dropped resource (and what is under it) keeps no permissions."""
        for granted in self._granted.values():
            for held in list(granted):
                if held == resource or resource in _parents(held):
                    del granted[held]
        if resource.kind == "role":
            self._granted.pop(resource.names[0] or "", None)

    def apply(self, statement: ast.Grant, user: str | None) -> None:
        """GRANT / REVOKE, with Cassandra's checks and errors."""
        if not self.enabled:
            raise Invalid(
                f"{statement.action.upper()} operation is not supported by AllowAllAuthorizer"
            )
        resource = statement.resource
        self._check_exists(resource)
        if statement.role not in self.roles.roles:
            raise Invalid(f"<role {statement.role}> doesn't exist")
        wanted = self._permissions(statement.permissions, resource)
        self.check(user, "AUTHORIZE", resource)
        if not self._is_superuser(user):
            held = self._held(user, resource)
            missing = sorted(wanted - held, key=ALL_PERMISSIONS.index)
            if missing:
                raise Unauthorized(
                    f"User {user} has grant privilege on {resource_name(resource)} but not "
                    f"on {', '.join(missing)}"
                )
        granted = self._granted.setdefault(statement.role, {})
        if statement.action == "grant":
            granted.setdefault(resource, set()).update(wanted)
        else:
            kept = granted.get(resource, set()) - wanted
            if kept:
                granted[resource] = kept
            else:
                granted.pop(resource, None)

    def listing(self, statement: ast.ListPermissions, user: str | None) -> RowsResult | None:
        """LIST ... PERMISSIONS [ON resource] [OF role] [NORECURSIVE] (None: nothing to list)."""
        if not self.enabled:
            raise Invalid("LIST PERMISSIONS operation is not supported by AllowAllAuthorizer")
        if statement.role is not None and statement.role not in self.roles.roles:
            raise Invalid(f"<role {statement.role}> doesn't exist")
        if statement.resource is not None:
            self._check_exists(statement.resource)
        if not self._is_superuser(user):
            if statement.role is None:
                raise Unauthorized("You are not authorized to view everyone's permissions")
            if user is None or statement.role not in self.roles.of(user):
                raise Unauthorized(f"You are not authorized to view {statement.role}'s permissions")
        wanted = (
            set(ALL_PERMISSIONS) if statement.permissions is None else set(statement.permissions)
        )
        resources = None
        if statement.resource is not None:
            resources = (
                [statement.resource] if not statement.recursive else _parents(statement.resource)
            )
        rows: list[list[bytes | None]] = []
        roles = None
        if statement.role is not None:
            roles = self.roles.of(statement.role, statement.recursive)
        for role in sorted(self._granted):
            if roles is not None and role not in roles:
                continue
            for resource, held in sorted(
                self._granted[role].items(), key=lambda item: resource_name(item[0])
            ):
                if resources is not None and resource not in resources:
                    continue
                for permission in ALL_PERMISSIONS:
                    if permission in held and permission in wanted:
                        values = (role, role, resource_name(resource), permission)
                        rows.append([TEXT.serialize(v) for v in values])
        if not rows:
            return None
        specs = [
            ColumnSpec("system_auth", "permissions", name, TEXT)
            for name in ("role", "username", "resource", "permission")
        ]
        return RowsResult(specs, rows, None)

    def _permissions(self, names: tuple[str, ...] | None, resource: ast.Resource) -> set[str]:
        applicable = _APPLICABLE[resource.kind]
        if names is None:
            return set(applicable)
        bad = [name for name in names if name not in applicable]
        if bad:
            raise Invalid(
                f"Resource type {_JAVA_TYPES[resource.kind]} does not support any of the "
                f"requested permissions"
            )
        return set(names)

    def _check_exists(self, resource: ast.Resource) -> None:
        if resource.kind == "role" and resource.names[0] not in self.roles.roles:
            raise Invalid(f"{resource_name(resource)} doesn't exist")
        if resource.kind in ("keyspace", "table") and not self.exists(resource):
            raise Invalid(f"{resource_name(resource)} doesn't exist")


_JAVA_TYPES = {
    "data": "DataResource",
    "keyspace": "DataResource",
    "table": "DataResource",
    "roles": "RoleResource",
    "role": "RoleResource",
}
