"""The other ways to run the server: `async with` on a loop, and as a program in another process."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys

import pytest

from bridge.testing.cqlserver import CQLServer, parse_fault_spec
from bridge.testing.cqlserver import _frame as f

from .conftest import make_cluster


@pytest.mark.anyio
async def test_async_with_serves_on_the_running_loop(anyio_backend: object) -> None:
    if sniffio_name() == "trio":
        pytest.skip("the server runs on asyncio; trio code uses CQLServer.start_in_thread()")
    async with CQLServer(nodes=2) as server:
        assert server.contact_points == ["127.0.0.1", "127.0.0.2"]
        for address in server.contact_points:
            reader, writer = await asyncio.open_connection(address, server.port)
            writer.write(struct.pack(">BBhBi", 4, 0, 5, f.OPTIONS, 0))
            version, _flags, stream, opcode, length = f.HEADER.unpack(await reader.readexactly(9))
            body = await reader.readexactly(length)
            assert (version, stream, opcode) == (0x84, 5, f.SUPPORTED)
            assert b"CQL_VERSION" in body
            writer.close()
            await writer.wait_closed()


def sniffio_name() -> str:
    import sniffio

    return sniffio.current_async_library()


def test_program_serves_the_driver_and_reports_its_cpu_time() -> None:
    with CQLServer.start_in_subprocess(
        nodes=2, faults=["error=read_timeout:FROM nowhere.t"]
    ) as proc:
        assert proc.contact_points == ["127.0.0.1", "127.0.0.2"]
        cluster = make_cluster(proc)
        try:
            session = cluster.connect()
            assert session.execute("SELECT key FROM system.local").one().key == "local"
            assert len(cluster.metadata.all_hosts()) == 2
            assert proc.cpu_seconds() > 0
        finally:
            cluster.shutdown()
        report = proc.close()
    assert report is not None and report["event"] == "stopped"
    assert report["cpu_user"] + report["cpu_system"] > 0


def test_program_rejects_a_bad_fault_spec() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridge.testing.cqlserver", "--fault", "explode:SELECT"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown fault option 'explode'" in done.stderr


def test_fault_specs_parse_into_prime_arguments() -> None:
    assert parse_fault_spec("error=write_timeout,times=2,node=1:INSERT INTO ks.t") == {
        "pattern": "INSERT INTO ks.t",
        "error": "write_timeout",
        "times": 2,
        "node": 1,
    }
    assert parse_fault_spec("delay=0.25,regex,on=query|execute:^SELECT.*:x") == {
        "pattern": "^SELECT.*:x",
        "delay": 0.25,
        "regex": True,
        "opcodes": ("QUERY", "EXECUTE"),
    }
    with pytest.raises(ValueError, match="OPTIONS:PATTERN"):
        parse_fault_spec("no_response")
