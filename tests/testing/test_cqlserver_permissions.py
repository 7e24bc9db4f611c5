"""CassandraAuthorizer through the real driver: GRANT, REVOKE, LIST PERMISSIONS, and the
Unauthorized errors a role without a permission gets, as Cassandra 4.1 words them."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
from cassandra import InvalidRequest, Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, Session

from bridge.testing.cqlserver import CQLServer, ServerThread

from .conftest import make_cluster

_names = itertools.count()


@pytest.fixture(scope="module")
def authz_server() -> Iterator[ServerThread]:
    with CQLServer.start_in_thread(
        authenticator="PasswordAuthenticator", authorizer="CassandraAuthorizer"
    ) as server:
        yield server


@pytest.fixture
def login(authz_server: ServerThread) -> Iterator[Callable[..., Session]]:
    clusters: list[Cluster] = []

    def start(username: str, password: str, protocol_version: int = 5) -> Session:
        provider = PlainTextAuthProvider(username=username, password=password)
        cluster = make_cluster(
            authz_server, auth_provider=provider, protocol_version=protocol_version
        )
        clusters.append(cluster)
        return cluster.connect()

    yield start
    for cluster in clusters:
        cluster.shutdown()


@pytest.fixture(params=[4, 5], ids=lambda v: f"v{v}")
def world(request: pytest.FixtureRequest, login: Callable[..., Session]) -> tuple[Session, str]:
    """The superuser's session, and a fresh keyspace with a table ``t`` in it."""
    admin = login("cassandra", "cassandra", request.param)
    ks = f"perm{next(_names)}"
    admin.execute(
        f"CREATE KEYSPACE {ks} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    admin.execute(f"CREATE TABLE {ks}.t (k int PRIMARY KEY, v int)")
    admin.execute(f"INSERT INTO {ks}.t (k, v) VALUES (1, 10)")
    return admin, ks


def _role(admin: Session) -> str:
    name = f"user{next(_names)}"
    admin.execute(f"CREATE ROLE {name} WITH PASSWORD = 'pw' AND LOGIN = true")
    return name


def test_a_role_without_permissions_is_refused_with_cassandras_message(
    world: tuple[Session, str], login: Callable[..., Session]
) -> None:
    admin, ks = world
    name = _role(admin)
    user = login(name, "pw")
    # Drivers and cqlsh read the system keyspaces on connect: every role may.
    assert user.execute("SELECT release_version FROM system.local").one()
    with pytest.raises(Unauthorized, match=(
        f"User {name} has no SELECT permission on <table {ks}.t> or any of its parents"
    )):  # fmt: skip
        user.execute(f"SELECT * FROM {ks}.t")
    with pytest.raises(Unauthorized, match=f"has no MODIFY permission on <table {ks}.t>"):
        user.execute(f"INSERT INTO {ks}.t (k, v) VALUES (2, 20)")
    with pytest.raises(Unauthorized, match="has no CREATE permission on <all keyspaces>"):
        user.execute(
            "CREATE KEYSPACE nope WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )


def test_grant_on_a_keyspace_covers_its_tables_and_revoke_takes_it_back(
    world: tuple[Session, str], login: Callable[..., Session]
) -> None:
    admin, ks = world
    name = _role(admin)
    user = login(name, "pw")
    admin.execute(f"GRANT SELECT ON KEYSPACE {ks} TO {name}")
    assert [tuple(r) for r in user.execute(f"SELECT k, v FROM {ks}.t")] == [(1, 10)]
    prepared = user.prepare(f"SELECT v FROM {ks}.t WHERE k = ?")
    assert user.execute(prepared, (1,)).one().v == 10
    with pytest.raises(Unauthorized, match="no MODIFY permission"):
        user.execute(f"UPDATE {ks}.t SET v = 11 WHERE k = 1")
    admin.execute(f"GRANT MODIFY ON TABLE {ks}.t TO {name}")
    insert = user.prepare(f"INSERT INTO {ks}.t (k, v) VALUES (?, ?)")
    user.execute(insert, (2, 20))
    admin.execute(f"REVOKE SELECT ON KEYSPACE {ks} FROM {name}")
    with pytest.raises(Unauthorized, match="no SELECT permission"):
        user.execute(prepared, (2,))  # checked again at every execution
    assert admin.execute(f"SELECT v FROM {ks}.t WHERE k = 2").one().v == 20


def test_list_permissions_shows_grants_as_cassandra_does(
    world: tuple[Session, str], login: Callable[..., Session]
) -> None:
    admin, ks = world
    name = _role(admin)
    admin.execute(f"GRANT ALL PERMISSIONS ON TABLE {ks}.t TO {name}")
    admin.execute(f"GRANT SELECT ON ALL KEYSPACES TO {name}")
    result = admin.execute(f"LIST ALL PERMISSIONS OF {name}")
    assert result.column_names == ["role", "username", "resource", "permission"]
    rows = list(result)
    assert [(r.resource, r.permission) for r in rows] == [
        ("<all keyspaces>", "SELECT"),
        *[(f"<table {ks}.t>", p) for p in ("ALTER", "DROP", "SELECT", "MODIFY", "AUTHORIZE")],
    ]
    assert {r.role for r in rows} == {r.username for r in rows} == {name}
    on_table = admin.execute(f"LIST SELECT ON TABLE {ks}.t OF {name}")
    assert [r.resource for r in on_table] == ["<all keyspaces>", f"<table {ks}.t>"]
    only = admin.execute(f"LIST SELECT ON TABLE {ks}.t OF {name} NORECURSIVE")
    assert [r.resource for r in only] == [f"<table {ks}.t>"]
    user = login(name, "pw")
    assert len(list(user.execute(f"LIST ALL OF {name}"))) == 6  # one's own: allowed
    with pytest.raises(Unauthorized, match="not authorized to view everyone's permissions"):
        user.execute("LIST ALL PERMISSIONS")


def test_a_creator_gets_every_permission_on_what_it_creates(
    world: tuple[Session, str], login: Callable[..., Session]
) -> None:
    admin, _ = world
    name = _role(admin)
    admin.execute(f"GRANT CREATE ON ALL KEYSPACES TO {name}")
    user = login(name, "pw")
    own = f"own{next(_names)}"
    user.execute(
        f"CREATE KEYSPACE {own} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    user.execute(f"CREATE TABLE {own}.t (k int PRIMARY KEY, v int)")
    user.execute(f"INSERT INTO {own}.t (k, v) VALUES (1, 1)")
    assert user.execute(f"SELECT v FROM {own}.t").one().v == 1
    assert {r.resource for r in admin.execute(f"LIST ALL OF {name}")} == {
        "<all keyspaces>",
        f"<keyspace {own}>",
        f"<table {own}.t>",
    }
    user.execute(f"DROP KEYSPACE {own}")  # and its permissions go with it
    assert {r.resource for r in admin.execute(f"LIST ALL OF {name}")} == {"<all keyspaces>"}


def test_grants_name_things_that_exist_and_permissions_they_take(
    world: tuple[Session, str], login: Callable[..., Session]
) -> None:
    admin, ks = world
    name = _role(admin)
    with pytest.raises(InvalidRequest, match="<keyspace missing> doesn't exist"):
        admin.execute(f"GRANT SELECT ON KEYSPACE missing TO {name}")
    with pytest.raises(InvalidRequest, match="<role ghost> doesn't exist"):
        admin.execute(f"GRANT SELECT ON KEYSPACE {ks} TO ghost")
    with pytest.raises(InvalidRequest, match="does not support any of the requested permissions"):
        admin.execute(f"GRANT CREATE ON TABLE {ks}.t TO {name}")
    user = login(name, "pw")
    with pytest.raises(Unauthorized, match=f"has no AUTHORIZE permission on <keyspace {ks}>"):
        user.execute(f"GRANT SELECT ON KEYSPACE {ks} TO {name}")


def test_a_role_may_change_its_own_password_but_not_create_roles(
    world: tuple[Session, str], login: Callable[..., Session]
) -> None:
    admin, _ = world
    name = _role(admin)
    user = login(name, "pw")
    user.execute(f"ALTER ROLE {name} WITH PASSWORD = 'new'")
    assert login(name, "new").execute("SELECT * FROM system.local").one()
    with pytest.raises(Unauthorized, match="has no CREATE permission on <all roles>"):
        user.execute("CREATE ROLE other")


def test_an_authorizer_needs_logins_and_a_known_name() -> None:
    with pytest.raises(ValueError, match="needs logins"):
        CQLServer(authorizer="CassandraAuthorizer")
    with pytest.raises(ValueError, match="unknown authorizer"):
        CQLServer(authenticator="PasswordAuthenticator", authorizer="LDAPAuthorizer")


def test_the_command_line_server_checks_permissions_with_authz() -> None:
    with CQLServer.start_in_subprocess(
        authenticator="PasswordAuthenticator", authorizer="CassandraAuthorizer"
    ) as server:
        clusters = [
            make_cluster(server, auth_provider=PlainTextAuthProvider(user, password))
            for user, password in (("cassandra", "cassandra"), ("reader", "pw"))
        ]
        try:
            admin = clusters[0].connect()
            admin.execute("CREATE ROLE reader WITH PASSWORD = 'pw' AND LOGIN = true")
            with pytest.raises(Unauthorized, match="has no CREATE permission on <all roles>"):
                clusters[1].connect().execute("CREATE ROLE other")
        finally:
            for cluster in clusters:
                cluster.shutdown()


def test_roles_granted_to_a_role_give_it_their_permissions(
    world: tuple[Session, str], login: Callable[..., Session]
) -> None:
    admin, ks = world
    name, group = _role(admin), f"group{next(_names)}"
    admin.execute(f"CREATE ROLE {group}")
    admin.execute(f"GRANT SELECT ON KEYSPACE {ks} TO {group}")
    admin.execute(f"GRANT {group} TO {name}")
    user = login(name, "pw")
    assert user.execute(f"SELECT v FROM {ks}.t WHERE k = 1").one().v == 10
    assert sorted(r.role for r in admin.execute(f"LIST ROLES OF {name}")) == sorted([group, name])
    assert [r.role for r in user.execute("LIST ROLES")] == sorted([group, name])
    assert [r.resource for r in user.execute(f"LIST ALL OF {name}")] == [f"<keyspace {ks}>"]
    member_of = admin.execute(f"SELECT member_of FROM system_auth.roles WHERE role = '{name}'")
    assert member_of.one().member_of == {group}
    with pytest.raises(InvalidRequest, match=f"{name} is a member of {group}"):
        admin.execute(f"GRANT {group} TO {name}")
    with pytest.raises(InvalidRequest, match=f"{name} is a member of {group}"):
        admin.execute(f"GRANT {name} TO {group}")  # no cycles
    admin.execute(f"REVOKE {group} FROM {name}")
    with pytest.raises(Unauthorized, match="no SELECT permission"):
        user.execute(f"SELECT v FROM {ks}.t WHERE k = 1")
    with pytest.raises(InvalidRequest, match=f"{name} is not a member of {group}"):
        admin.execute(f"REVOKE {group} FROM {name}")
