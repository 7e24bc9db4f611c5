"""The codec against the driver's own: what cassandra-driver encodes we decode, and back."""

from __future__ import annotations

from typing import Any

import pytest
from cassandra import ConsistencyLevel, WriteType
from cassandra.cqltypes import Int32Type
from cassandra.protocol import (
    BatchMessage,
    ErrorMessage,
    ExecuteMessage,
    PreparedQueryNotFound,
    ProtocolHandler,
    QueryMessage,
    ReadTimeoutErrorMessage,
    RegisterMessage,
    ResultMessage,
    StartupMessage,
    SupportedMessage,
    WriteTimeoutErrorMessage,
)
from cassandra.query import BatchType

from bridge.testing.cqlserver import _frame as f


def driver_encode(msg: Any, stream: int = 7) -> bytes:
    return bytes(ProtocolHandler.encode_message(msg, stream, 4, None, False))


def driver_decode(frame: bytes, result_metadata: Any = None) -> Any:
    version, flags, stream, opcode, length = f.HEADER.unpack_from(frame)
    assert version == 0x84
    assert length == len(frame) - f.HEADER_SIZE
    body = frame[f.HEADER_SIZE :]
    return ProtocolHandler.decode_message(4, {}, stream, flags, opcode, body, None, result_metadata)


def reader_for(frame: bytes) -> tuple[int, int, f.BodyReader]:
    _version, _flags, stream, opcode, _length = f.HEADER.unpack_from(frame)
    return stream, opcode, f.BodyReader(frame, f.HEADER_SIZE)


def test_query_with_paging_parameters_decodes() -> None:
    msg = QueryMessage(
        "SELECT * FROM ks.t WHERE k = ?",
        ConsistencyLevel.LOCAL_QUORUM,
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        fetch_size=50,
        paging_state=b"\x01\x02",
        timestamp=1234567,
    )
    msg.query_params = [b"\x00\x00\x00\x05", None]
    stream, opcode, reader = reader_for(driver_encode(msg, stream=300))
    assert (stream, opcode) == (300, f.QUERY)
    assert reader.read_long_string() == "SELECT * FROM ks.t WHERE k = ?"
    params = reader.read_query_params()
    assert params.consistency == ConsistencyLevel.LOCAL_QUORUM
    assert params.values == [b"\x00\x00\x00\x05", None]
    assert params.page_size == 50
    assert params.paging_state == b"\x01\x02"
    assert params.serial_consistency == ConsistencyLevel.LOCAL_SERIAL
    assert params.timestamp == 1234567


def test_execute_decodes() -> None:
    msg = ExecuteMessage(b"\xaa" * 16, [b"x"], ConsistencyLevel.ONE)
    _stream, opcode, reader = reader_for(driver_encode(msg))
    assert opcode == f.EXECUTE
    assert reader.read_short_bytes() == b"\xaa" * 16
    params = reader.read_query_params()
    assert params.values == [b"x"]


def test_named_values_and_skip_metadata_decode() -> None:
    flags = f.Q_VALUES | f.Q_NAMES_FOR_VALUES | f.Q_SKIP_METADATA
    body = b"\x00\x01" + bytes([flags]) + b"\x00\x01" + f.enc_string("k") + f.enc_bytes(b"v")
    params = f.BodyReader(body).read_query_params()
    assert params.values == {"k": b"v"}
    assert params.skip_metadata


def test_batch_of_queries_and_prepared_ids_decodes() -> None:
    msg = BatchMessage(
        BatchType.UNLOGGED,
        [(False, "INSERT INTO t (k) VALUES (?)", [b"a"]), (True, b"\x01\x02", [b"b", None])],
        ConsistencyLevel.QUORUM,
        timestamp=99,
    )
    _stream, opcode, reader = reader_for(driver_encode(msg))
    assert opcode == f.BATCH
    batch = reader.read_batch()
    assert batch.batch_type == 1
    assert batch.statements == [
        ("INSERT INTO t (k) VALUES (?)", [b"a"]),
        (b"\x01\x02", [b"b", None]),
    ]
    assert batch.consistency == ConsistencyLevel.QUORUM
    assert batch.timestamp == 99


def test_startup_and_register_decode() -> None:
    startup = StartupMessage(cqlversion="3.4.5", options={"DRIVER_NAME": "x"})
    _s, opcode, reader = reader_for(driver_encode(startup))
    assert opcode == f.STARTUP
    assert reader.read_string_map() == {"CQL_VERSION": "3.4.5", "DRIVER_NAME": "x"}
    _s, opcode, reader = reader_for(driver_encode(RegisterMessage(["SCHEMA_CHANGE"])))
    assert opcode == f.REGISTER
    assert reader.read_string_list() == ["SCHEMA_CHANGE"]


def test_truncated_body_raises_frame_error() -> None:
    frame = driver_encode(QueryMessage("SELECT 1", ConsistencyLevel.ONE))
    reader = f.BodyReader(frame, f.HEADER_SIZE, len(frame) - 3)
    reader.read_long_string()
    with pytest.raises(f.FrameError):
        reader.read_query_params()


def test_supported_decodes_in_the_driver() -> None:
    msg = driver_decode(f.supported(1, {"CQL_VERSION": ["3.4.5"], "COMPRESSION": []}))
    assert isinstance(msg, SupportedMessage)
    assert msg.cql_versions == ["3.4.5"]
    assert msg.options["COMPRESSION"] == []


INT = b"\x00\x09"
TEXT = b"\x00\x0d"
LIST_OF_INT = b"\x00\x20" + INT


def test_rows_with_paging_state_decode_in_the_driver() -> None:
    cols = [f.ColumnMeta("ks", "t", "k", INT), f.ColumnMeta("ks", "t", "v", LIST_OF_INT)]
    value = b"\x00\x00\x00\x02" + b"\x00\x00\x00\x04\x00\x00\x00\x01" * 2
    meta = f.rows_metadata(2, cols, b"state")
    msg = driver_decode(
        f.result_rows(5, meta, [[b"\x00\x00\x00\x07", value], [b"\x00\x00\x00\x08", None]])
    )
    assert isinstance(msg, ResultMessage)
    assert msg.column_names == ["k", "v"]
    assert msg.parsed_rows == [(7, [1, 1]), (8, None)]
    assert msg.paging_state == b"state"


def test_rows_without_metadata_use_the_prepared_metadata() -> None:
    meta = f.rows_metadata(1, None, None)
    prepared_meta = [("ks", "t", "k", Int32Type)]
    msg = driver_decode(f.result_rows(5, meta, [[b"\x00\x00\x00\x07"]]), prepared_meta)
    assert msg.parsed_rows == [(7,)]
    assert msg.paging_state is None


def test_rows_across_tables_use_per_column_specs() -> None:
    cols = [f.ColumnMeta("ks", "a", "x", TEXT), f.ColumnMeta("ks2", "b", "y", TEXT)]
    msg = driver_decode(f.result_rows(0, f.rows_metadata(2, cols, None), [[b"p", b"q"]]))
    assert msg.parsed_rows == [("p", "q")]


def test_prepared_result_decodes_in_the_driver() -> None:
    bind = [f.ColumnMeta("ks", "t", "k", INT), f.ColumnMeta("ks", "t", "v", TEXT)]
    result = [f.ColumnMeta("ks", "t", "v", TEXT)]
    msg = driver_decode(f.result_prepared(3, b"\x10" * 16, bind, [0], result))
    assert msg.query_id == b"\x10" * 16
    assert [c[2] for c in msg.bind_metadata] == ["k", "v"]
    assert msg.pk_indexes == [0]
    assert [c[2] for c in msg.column_metadata] == ["v"]
    msg = driver_decode(f.result_prepared(3, b"\x10" * 16, bind, [], None))
    assert msg.column_metadata is None or msg.column_metadata == []


def test_set_keyspace_and_schema_change_results_decode() -> None:
    msg = driver_decode(f.result_set_keyspace(1, "ks"))
    assert msg.new_keyspace == "ks"
    msg = driver_decode(f.result_schema_change(1, "CREATED", "TABLE", "ks", "t"))
    assert msg.schema_change_event == {
        "change_type": "CREATED",
        "target_type": "TABLE",
        "keyspace": "ks",
        "table": "t",
    }


def test_error_bodies_carry_the_spec_fields() -> None:
    msg = driver_decode(f.error(1, f.READ_TIMEOUT, "slow", f.read_timeout_extra(4, 1, 2, True)))
    assert isinstance(msg, ReadTimeoutErrorMessage)
    assert msg.info == {
        "consistency": 4,
        "received_responses": 1,
        "required_responses": 2,
        "data_retrieved": True,
    }
    msg = driver_decode(
        f.error(1, f.WRITE_TIMEOUT, "slow", f.write_timeout_extra(1, 0, 1, "SIMPLE"))
    )
    assert isinstance(msg, WriteTimeoutErrorMessage)
    assert msg.info["write_type"] == WriteType.SIMPLE
    msg = driver_decode(f.error(1, f.UNPREPARED, "gone", f.unprepared_extra(b"\x05\x06")))
    assert isinstance(msg, PreparedQueryNotFound)
    assert msg.info == b"\x05\x06"
    msg = driver_decode(f.error(1, f.ALREADY_EXISTS, "dup", f.already_exists_extra("ks", "")))
    assert isinstance(msg, ErrorMessage)
    assert msg.info == {"keyspace": "ks", "table": ""}


def test_events_decode_in_the_driver() -> None:
    msg = driver_decode(f.event_node("STATUS_CHANGE", "DOWN", "127.0.0.2", 9042))
    assert msg.event_type == "STATUS_CHANGE"
    assert msg.event_args == {"change_type": "DOWN", "address": ("127.0.0.2", 9042)}
    msg = driver_decode(f.event_schema_change("DROPPED", "KEYSPACE", "ks", None))
    assert msg.event_args == {"change_type": "DROPPED", "target_type": "KEYSPACE", "keyspace": "ks"}
