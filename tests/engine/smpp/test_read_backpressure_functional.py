"""An SMSC that floods us with PDUs to answer but never reads the answers must not grow our memory.

Every ``deliver_sm``, ``data_sm`` and ``enquire_link`` is answered; if the SMSC stops reading, those
answers pile up in the bind's write buffer. The bind stops reading instead (TCP backpressure): the SMSC's
own writes block, and our buffer stays near its high-water mark.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from engine.smpp import pdu as p
from engine.smpp import smsc_carrier_settings
from engine.smpp.bind import READ_PAUSE_BYTES
from engine.smpp.client import SmppConnector
from engine.smpp.stream import read_pdu

pytestmark = pytest.mark.functional

FLOOD_BYTES = 32 << 20  # far more than the kernel's socket buffers hold on loopback


def test_an_smsc_that_floods_enquire_links_and_never_reads_the_answers_is_held_back():
    async def run():
        flood = p.encode_pdu(p.Pdu(p.ENQUIRE_LINK, 7, 0, {})) * 4096  # 64 KiB a write
        sent = 0
        stalled = asyncio.Event()

        async def smsc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal sent
            bind = await read_pdu(reader)
            writer.write(p.encode_pdu(p.response_to(bind, system_id="smsc")))
            await writer.drain()
            writer.transport.pause_reading()  # never reads an answer again
            try:
                while sent < FLOOD_BYTES:
                    writer.write(flood)
                    try:
                        await asyncio.wait_for(writer.drain(), 2.0)
                    except TimeoutError:
                        stalled.set()  # the gateway stopped reading: our writes block
                        return
                    sent += len(flood)
            except ConnectionError:
                return

        server = await asyncio.start_server(smsc, "127.0.0.1", 0, family=socket.AF_INET)
        port = server.sockets[0].getsockname()[1]
        settings = smsc_carrier_settings("127.0.0.1", port, binds=1, enquire_link_seconds=3600.0,
                                         reconnect_min_seconds=0.05, reconnect_max_seconds=0.2)
        peak = 0
        connector = SmppConnector("c1", settings, lambda _: None, lambda _: None,
                                  lambda up, why: None)
        await connector.start()
        try:
            async def watch() -> None:
                nonlocal peak
                while True:
                    for b in connector.binds:
                        w = b._writer
                        if w is not None:
                            peak = max(peak, w.transport.get_write_buffer_size())
                    await asyncio.sleep(0.001)

            watcher = asyncio.create_task(watch())
            deadline = asyncio.get_running_loop().time() + 60.0
            while not (stalled.is_set() or sent >= FLOOD_BYTES):
                assert asyncio.get_running_loop().time() < deadline, "the flood neither ended nor stalled"
                await asyncio.sleep(0.01)
            watcher.cancel()
        finally:
            await connector.stop(timeout=1.0)
            server.close()
            await server.wait_closed()
        return sent, stalled.is_set(), peak

    sent, stalled, peak = asyncio.run(run())
    assert stalled, f"the SMSC pushed {sent} bytes of PDUs without being held back"
    assert sent < FLOOD_BYTES
    assert peak <= READ_PAUSE_BYTES + (64 << 10)  # one of the SMSC's writes of answers at most
