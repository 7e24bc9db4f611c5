"""Roles and logins: what ``PasswordAuthenticator`` checks, and the role statements that edit it.

Cassandra keeps roles in ``system_auth.roles``; a new cluster has the
superuser ``cassandra`` / ``cassandra``. Passwords are kept as bcrypt-like
salted hashes there; here a SHA-256 with a per-role salt stands in (nobody
should reuse a test cluster's passwords, but none are kept in clear).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

from . import _ast as ast
from ._errors import Invalid, Unauthorized
from ._results import ColumnSpec, RowsResult
from ._types import BOOLEAN, TEXT, MapType

AUTHENTICATOR = "org.apache.cassandra.auth.PasswordAuthenticator"


@dataclass
class Role:
    name: str
    can_login: bool = False
    is_superuser: bool = False
    member_of: set[str] = field(default_factory=set)  # roles granted to this one
    salt: bytes = field(default_factory=lambda: os.urandom(16), repr=False)
    hashed: bytes | None = field(default=None, repr=False)

    def set_password(self, password: str) -> None:
        self.hashed = _hash(self.salt, password)

    def accepts(self, password: str) -> bool:
        return self.hashed is not None and hmac.compare_digest(
            self.hashed, _hash(self.salt, password)
        )


def _hash(salt: bytes, password: str) -> bytes:
    return hashlib.sha256(salt + password.encode("utf-8")).digest()


class Roles:
    """The cluster's roles, starting with the default superuser."""

    def __init__(self) -> None:
        default = Role("cassandra", can_login=True, is_superuser=True)
        default.set_password("cassandra")
        self.roles: dict[str, Role] = {default.name: default}

    def of(self, name: str, recursive: bool = True) -> set[str]:
        """The role and the roles granted to it (and to those, when recursive)."""
        found = {name}
        todo = [name]
        while todo:
            role = self.roles.get(todo.pop())
            for parent in role.member_of if role is not None else ():
                if parent not in found:
                    found.add(parent)
                    if recursive:
                        todo.append(parent)
        return found

    def is_superuser(self, name: str | None) -> bool:
        """Whether the role, or one granted to it, is a superuser."""
        return (
            name is not None
            and name in self.roles
            and any(self.roles[r].is_superuser for r in self.of(name) if r in self.roles)
        )

    def grant(self, statement: ast.GrantRole) -> None:
        """GRANT role TO grantee / REVOKE role FROM grantee, with Cassandra's errors."""
        for name in (statement.role, statement.grantee):
            if name not in self.roles:
                raise Invalid(f"{name} doesn't exist")
        role, grantee = statement.role, statement.grantee
        if statement.action == "revoke":
            if role not in self.roles[grantee].member_of:
                raise Invalid(f"{grantee} is not a member of {role}")
            self.roles[grantee].member_of.discard(role)
            return
        if role in self.of(grantee):
            raise Invalid(f"{grantee} is a member of {role}")
        if grantee in self.of(role):
            raise Invalid(f"{role} is a member of {grantee}")
        self.roles[grantee].member_of.add(role)

    def login(self, username: str, password: str) -> bool:
        """Whether these credentials open a session (PasswordAuthenticator's check)."""
        role = self.roles.get(username)
        return role is not None and role.can_login and role.accepts(password)

    def apply(self, statement: ast.RoleStatement) -> None:
        """CREATE / ALTER / DROP ROLE (or USER), with Cassandra's errors."""
        existing = self.roles.get(statement.name)
        if statement.action == "create":
            if existing is not None:
                if statement.if_flag:
                    return
                raise Invalid(f"{statement.name} already exists")
            role = Role(statement.name, can_login=statement.user_syntax)
            self._set_options(role, statement)
            self.roles[role.name] = role
            return
        if existing is None:
            if statement.action == "drop" and statement.if_flag:
                return
            raise Invalid(f"{statement.name} doesn't exist")
        if statement.action == "drop":
            del self.roles[statement.name]
            for role in self.roles.values():
                role.member_of.discard(statement.name)
        else:
            self._set_options(existing, statement)

    def _set_options(self, role: Role, statement: ast.RoleStatement) -> None:
        for option, value in statement.options.items():
            if option == "password":
                if not isinstance(value, str):
                    raise Invalid("Invalid value for property 'password'. It must be a string")
                role.set_password(value)
            elif option == "login":
                role.can_login = _boolean(value, option)
            elif option == "superuser":
                role.is_superuser = _boolean(value, option)
            elif option not in ("options", "access_to_datacenters"):
                raise Invalid(f"Invalid property {option}")

    def listing(
        self, statement: ast.ListRoles, user: str | None, sees_all: bool = True
    ) -> RowsResult | None:
        """LIST ROLES / LIST USERS as Cassandra 4.1 answers them (None: no role to list).

        ``sees_all``: the user may describe every role (a superuser, DESCRIBE on all roles,
        or no authorizer); otherwise it sees its own roles and those granted to it.
        """
        if user is None:
            raise Unauthorized("You have to be logged in and not anonymous to perform this request")
        if statement.of is not None and statement.of not in self.roles:
            raise Invalid(f"<role {statement.of}> doesn't exist")
        if statement.of is None:
            names = sorted(self.roles) if sees_all else sorted(self.of(user))
        else:
            if not sees_all and statement.of not in self.of(user):
                raise Unauthorized(
                    f"You are not authorized to view roles granted to {statement.of} "
                )
            names = sorted(self.of(statement.of, statement.recursive))
        chosen = [self.roles[name] for name in names]
        if not chosen:
            return None
        if statement.users:
            specs = [
                ColumnSpec("system_auth", "users", name, cql_type)
                for name, cql_type in (("name", TEXT), ("super", BOOLEAN), ("datacenters", TEXT))
            ]
            values = [[r.name, self.is_superuser(r.name), "ALL"] for r in chosen if r.can_login]
        else:
            specs = [
                ColumnSpec("system_auth", "roles", name, cql_type)
                for name, cql_type in (
                    ("role", TEXT), ("super", BOOLEAN), ("login", BOOLEAN),
                    ("options", _OPTIONS), ("datacenters", TEXT),
                )
            ]  # fmt: skip
            values = [[r.name, r.is_superuser, r.can_login, [], "ALL"] for r in chosen]
        rows: list[list[bytes | None]] = [
            [spec.type.serialize(value) for spec, value in zip(specs, row, strict=True)]
            for row in values
        ]
        return RowsResult(specs, rows, None)

    def rows(self) -> list[dict[str, object]]:
        """``system_auth.roles``."""
        return [
            {
                "role": role.name,
                "can_login": role.can_login,
                "is_superuser": role.is_superuser,
                "member_of": sorted(role.member_of) or None,
                "salted_hash": (role.salt + role.hashed).hex() if role.hashed else None,
            }
            for role in self.roles.values()
        ]


_OPTIONS = MapType(TEXT, TEXT, frozen=False)


def _boolean(value: object, option: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise Invalid(f"Invalid value for property '{option}'. It must be a boolean")
