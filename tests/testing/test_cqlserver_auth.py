"""PasswordAuthenticator through the real driver's PlainTextAuthProvider, on v4 and v5."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cassandra import AuthenticationFailed, InvalidRequest, Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable, Session

from bridge.testing.cqlserver import CQLServer, ServerProcess, ServerThread

from .conftest import make_cluster


@pytest.fixture(scope="module")
def auth_server() -> Iterator[ServerThread]:
    with CQLServer.start_in_thread(authenticator="PasswordAuthenticator") as server:
        yield server


@pytest.fixture
def connect(auth_server: ServerThread) -> Iterator[Callable[..., Cluster]]:
    clusters: list[Cluster] = []

    def start(username: str, password: str, protocol_version: int = 5) -> Cluster:
        provider = PlainTextAuthProvider(username=username, password=password)
        cluster = make_cluster(
            auth_server, auth_provider=provider, protocol_version=protocol_version
        )
        clusters.append(cluster)
        return cluster

    yield start
    for cluster in clusters:
        cluster.shutdown()


@pytest.mark.parametrize("version", [4, 5])
def test_the_default_superuser_logs_in(connect: Callable[..., Cluster], version: int) -> None:
    session = connect("cassandra", "cassandra", version).connect()
    assert session.execute("SELECT release_version FROM system.local").one().release_version


@pytest.mark.parametrize("version", [4, 5])
def test_bad_credentials_are_refused_with_cassandras_message(
    connect: Callable[..., Cluster], version: int
) -> None:
    with pytest.raises(NoHostAvailable) as caught:
        connect("cassandra", "wrong", version).connect()
    (error,) = caught.value.errors.values()
    assert isinstance(error, AuthenticationFailed)
    assert "Provided username cassandra and/or password are incorrect" in str(error)


def test_roles_created_with_cql_can_log_in(connect: Callable[..., Cluster]) -> None:
    admin = connect("cassandra", "cassandra").connect()
    admin.execute("CREATE ROLE alice WITH PASSWORD = 's3cret' AND LOGIN = true")
    admin.execute("CREATE USER bob WITH PASSWORD 'pw' NOSUPERUSER")
    admin.execute("CREATE ROLE nologin WITH PASSWORD = 'x'")
    rows = {r.role: r for r in admin.execute("SELECT * FROM system_auth.roles")}
    assert rows["alice"].can_login and not rows["alice"].is_superuser
    assert rows["bob"].can_login and rows["cassandra"].is_superuser
    assert connect("alice", "s3cret").connect().execute("SELECT * FROM system.local").one()
    assert connect("bob", "pw").connect().execute("SELECT * FROM system.local").one()
    with pytest.raises(NoHostAvailable):
        connect("nologin", "x").connect()  # a role without LOGIN cannot open a session
    admin.execute("ALTER ROLE alice WITH PASSWORD = 'new'")
    with pytest.raises(NoHostAvailable):
        connect("alice", "s3cret").connect()
    with pytest.raises(InvalidRequest, match="alice already exists"):
        admin.execute("CREATE ROLE alice")
    admin.execute("DROP ROLE alice")
    with pytest.raises(InvalidRequest, match="alice doesn't exist"):
        admin.execute("DROP ROLE alice")
    with pytest.raises(InvalidRequest, match="not supported by AllowAllAuthorizer"):
        admin.execute("GRANT SELECT ON KEYSPACE system TO bob")


@pytest.mark.parametrize("version", [4, 5])
def test_list_roles_and_list_users_answer_as_cassandra_4_1(
    connect: Callable[..., Cluster], version: int
) -> None:
    admin = connect("cassandra", "cassandra", version).connect()
    admin.execute("CREATE ROLE IF NOT EXISTS lister_a WITH LOGIN = true AND PASSWORD = 'p'")
    admin.execute("CREATE ROLE IF NOT EXISTS lister_group")
    result = admin.execute("LIST ROLES")
    assert result.column_names == ["role", "super", "login", "options", "datacenters"]
    rows = {r.role: r for r in result}
    assert list(rows) == sorted(rows)
    cassandra = rows["cassandra"]
    assert (cassandra.super, cassandra.login, dict(cassandra.options)) == (True, True, {})
    assert cassandra.datacenters == "ALL"
    assert tuple(rows["lister_a"])[1:3] == (False, True)
    assert tuple(rows["lister_group"])[1:3] == (False, False)
    (only,) = admin.execute("LIST ROLES OF lister_a NORECURSIVE")
    assert (only.role, only.super, only.login) == ("lister_a", False, True)
    users = admin.execute("LIST USERS")
    assert users.column_names == ["name", "super", "datacenters"]
    names = [r.name for r in users]
    assert "lister_a" in names and "cassandra" in names and "lister_group" not in names
    with pytest.raises(InvalidRequest, match="<role nobody> doesn't exist"):
        admin.execute("LIST ROLES OF nobody")


def test_list_roles_without_a_login_is_unauthorized(cql_session: Session) -> None:
    with pytest.raises(Unauthorized, match="logged in and not anonymous"):
        cql_session.execute("LIST ROLES")


def test_a_driver_without_credentials_is_told_to_authenticate(
    auth_server: ServerThread,
) -> None:
    cluster = make_cluster(auth_server)
    try:
        with pytest.raises(NoHostAvailable, match="requires authentication"):
            cluster.connect()
    finally:
        cluster.shutdown()


def test_an_unknown_authenticator_is_refused() -> None:
    with pytest.raises(ValueError, match="PasswordAuthenticator"):
        CQLServer(authenticator="LDAPAuthenticator")
    with pytest.raises(ValueError, match="unknown authenticator"):
        ServerProcess(authenticator="LDAPAuthenticator")


def test_the_readme_example_runs() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## A Cassandra server for tests") :]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    (example,) = [b for b in blocks if "PasswordAuthenticator" in b]
    exec(compile(example, "README.md", "exec"), {})


def test_the_command_line_server_requires_logins_with_auth() -> None:
    with CQLServer.start_in_subprocess(authenticator="PasswordAuthenticator") as server:
        provider = PlainTextAuthProvider(username="cassandra", password="wrong")
        cluster = make_cluster(server, auth_provider=provider)
        try:
            with pytest.raises(NoHostAvailable, match="and/or password are incorrect"):
                cluster.connect()
        finally:
            cluster.shutdown()
