"""CQL types: wire round-trips, the driver's own encoding, literals and the token hash."""

from __future__ import annotations

import decimal
import ipaddress
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.testing.cqlserver._errors import Invalid
from bridge.testing.cqlserver._murmur3 import murmur3_token, python_murmur3_token
from bridge.testing.cqlserver._types import CQLType, parse_type

VALUES: dict[str, st.SearchStrategy[object]] = {
    "text": st.text(),
    "ascii": st.text(alphabet=st.characters(max_codepoint=127)),
    "int": st.integers(-(2**31), 2**31 - 1),
    "bigint": st.integers(-(2**63), 2**63 - 1),
    "smallint": st.integers(-(2**15), 2**15 - 1),
    "tinyint": st.integers(-128, 127),
    "varint": st.integers(-(2**200), 2**200),
    "boolean": st.booleans(),
    "double": st.floats(allow_nan=False),
    "float": st.floats(width=32, allow_nan=False),
    "decimal": st.decimals(allow_nan=False, allow_infinity=False),
    "uuid": st.uuids(),
    "timeuuid": st.uuids(version=1),
    "timestamp": st.integers(-(2**62), 2**62),
    "date": st.integers(-(2**31), 2**31 - 1),
    "time": st.integers(0, 86_400 * 10**9 - 1),
    "blob": st.binary(),
    "inet": st.ip_addresses(),
}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_every_native_type_round_trips(name: str) -> None:
    cql_type = parse_type(name)

    @given(VALUES[name])
    def check(value: object) -> None:
        assert cql_type.deserialize(cql_type.serialize(value)) == value

    check()


@given(st.lists(st.integers(-(2**31), 2**31 - 1)), st.dictionaries(st.text(), st.uuids()))
def test_collections_round_trip(items: list[int], mapping: dict[str, uuid.UUID]) -> None:
    as_list = parse_type("list<int>")
    as_set = parse_type("set<int>")
    as_map = parse_type("map<text, uuid>")
    assert as_list.deserialize(as_list.serialize(items)) == items
    assert as_set.deserialize(as_set.serialize(items)) == sorted(set(items))
    pairs = as_map.deserialize(as_map.serialize(mapping))
    assert dict(pairs) == mapping  # type: ignore[call-overload]


@given(
    st.integers(-(2**63), 2**63 - 1), st.text(), st.decimals(allow_nan=False, allow_infinity=False)
)
def test_serialization_matches_the_driver(number: int, text: str, dec: decimal.Decimal) -> None:
    from cassandra.cqltypes import DecimalType, LongType, UTF8Type

    assert parse_type("bigint").serialize(number) == LongType.serialize(number, 4)
    assert parse_type("text").serialize(text) == UTF8Type.serialize(text, 4)
    assert parse_type("decimal").serialize(dec) == DecimalType.serialize(dec, 4)


def test_collection_wire_format_matches_the_driver() -> None:
    from cassandra.cqltypes import lookup_casstype

    driver_type = lookup_casstype("MapType(UTF8Type, ListType(Int32Type))")
    value = {"a": [1, 2], "b": []}
    ours = parse_type("map<text, frozen<list<int>>>")
    assert ours.serialize(value) == driver_type.serialize(value, 4)


@given(st.binary(max_size=80))
def test_token_matches_the_driver_murmur3(key: bytes) -> None:
    from cassandra.murmur3 import murmur3

    assert python_murmur3_token(key) == murmur3_token(key) == murmur3(key)


def test_type_names_and_options() -> None:
    assert parse_type("MAP<varchar, FROZEN<list<int>>>").name == "map<text, frozen<list<int>>>"
    assert parse_type("int").option() == b"\x00\x09"
    assert parse_type("list<text>").option() == b"\x00\x20\x00\x0d"
    assert parse_type("map<int, boolean>").option() == b"\x00\x21\x00\x09\x00\x04"
    assert parse_type("set<uuid>").option() == b"\x00\x22\x00\x0c"


@pytest.mark.parametrize("text", ["nope", "list<int", "list<list<int>>", "map<int>", "frozen<int>"])
def test_unknown_or_invalid_types_are_refused(text: str) -> None:
    with pytest.raises(Invalid):
        parse_type(text)


@pytest.mark.parametrize(
    ("type_name", "kind", "text", "expected"),
    [
        ("text", "string", "héllo", "héllo"),
        ("int", "integer", "-12", -12),
        ("bigint", "integer", "9000000000", 9_000_000_000),
        ("double", "float", "1.5e3", 1500.0),
        ("float", "integer", "2", 2.0),
        ("decimal", "float", "1.10", decimal.Decimal("1.10")),
        ("varint", "integer", "123456789012345678901234567890", 123456789012345678901234567890),
        ("boolean", "boolean", "TRUE", True),
        ("uuid", "uuid", "12345678-1234-5678-1234-567812345678",
         uuid.UUID("12345678-1234-5678-1234-567812345678")),
        ("timestamp", "string", "2024-01-02 03:04:05.678+0000", 1704164645678),
        ("timestamp", "string", "1970-01-01T00:00:01Z", 1000),
        ("timestamp", "integer", "42", 42),
        ("date", "string", "1970-01-11", 10),
        ("time", "string", "01:00:00.5", 3_600_500_000_000),
        ("blob", "hex", "0xCAFE", b"\xca\xfe"),
        ("inet", "string", "::1", ipaddress.ip_address("::1")),
    ],
)  # fmt: skip
def test_literals(type_name: str, kind: str, text: str, expected: object) -> None:
    assert parse_type(type_name).from_constant(kind, text) == expected


@pytest.mark.parametrize(
    ("type_name", "data"), [("int", b"\x00\x01"), ("bigint", b"\x00"), ("uuid", b"\x01" * 3)]
)
def test_wrong_sized_values_are_invalid(type_name: str, data: bytes) -> None:
    with pytest.raises(Invalid, match="Expected"):
        parse_type(type_name).deserialize(data)


def test_out_of_range_values_are_invalid() -> None:
    cql_type: CQLType = parse_type("tinyint")
    with pytest.raises(Invalid, match="out of range"):
        cql_type.serialize(128)
    with pytest.raises(Invalid):
        parse_type("int").from_constant("string", "x")
