"""The driver's object mapper (cqlengine) against the server: sync_table with an index and a
UDT, LWT, batches, counting, and a model change synced as ALTER TABLE."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cassandra.cqlengine import columns, connection, management, usertype
from cassandra.cqlengine.models import Model
from cassandra.cqlengine.query import BatchQuery, LWTException

from bridge.testing.cqlserver import ServerThread

KS = "mapper"
NAME = "cqlserver-mapper"


class Address(usertype.UserType):  # type: ignore[misc]
    __connection__ = NAME
    street = columns.Text()
    zipcode = columns.Integer()


def _person(extra: dict[str, Any] | None = None) -> type[Model]:
    body: dict[str, Any] = {
        "__keyspace__": KS,
        "__connection__": NAME,
        "__table_name__": "person",
        "id": columns.UUID(primary_key=True, default=uuid.uuid4),
        "name": columns.Text(index=True),
        "age": columns.Integer(),
        "tags": columns.Set(columns.Text),
        "address": columns.UserDefinedType(Address),
        **(extra or {}),
    }
    return type("Person", (Model,), body)


@pytest.fixture(scope="module")
def mapper(cql_server_factory: Callable[..., ServerThread]) -> Iterator[None]:
    server = cql_server_factory()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CQLENG_ALLOW_SCHEMA_MANAGEMENT", "1")  # silences cqlengine's warning
        connection.register_connection(
            NAME,
            server.contact_points,
            cluster_options={"port": server.port, "protocol_version": 5},
        )
        try:
            management.create_keyspace_simple(KS, 1, connections=[NAME])
            yield
        finally:
            connection.unregister_connection(NAME)


def test_models_round_trip(mapper: None) -> None:
    person = _person()
    management.sync_table(person, connections=[NAME])
    ann = person.create(name="Ann", age=30, tags={"a"}, address=Address(street="Main", zipcode=1))
    found = person.objects(name="Ann").first()  # through the secondary index
    assert (found.address.street, found.address.zipcode, found.tags) == ("Main", 1, {"a"})
    ann.update(age=31)
    assert person.get(id=ann.id).age == 31
    with pytest.raises(LWTException) as refused:
        person.objects(id=ann.id).iff(age=99).update(age=40)
    assert refused.value.existing == {"[applied]": False, "age": 31}
    with BatchQuery(connection=NAME) as batch:
        person.batch(batch).create(name="Bob", age=5)
    assert person.objects.count() == 2


def test_a_model_change_is_synced_as_alter_table(mapper: None) -> None:
    management.sync_table(_person(), connections=[NAME])
    changed = _person({"nickname": columns.Text(), "joined": columns.DateTime()})
    management.sync_table(changed, connections=[NAME])
    table = connection.get_cluster(NAME).metadata.keyspaces[KS].tables["person"]
    assert {"nickname", "joined"} <= set(table.columns)
    row = changed.create(name="Cy", nickname="c", joined=datetime.datetime(2024, 1, 2))
    assert changed.get(id=row.id).nickname == "c"
