"""The bench's lean HTTP client and webhook receiver, through real loopback sockets."""

from __future__ import annotations

import asyncio

import pytest

from bench.http_wire import HookServer, LoopbackClient


async def _scripted_server(answers: list[bytes]):
    """A server that reads one request per answer and writes the next answer (b"" closes instead);
    returns (server, the number of connections accepted, the requests seen)."""
    seen: list[bytes] = []
    connections = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        try:
            while answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                seen.append(head + await reader.readexactly(length))
                answer = answers.pop(0)
                if not answer:
                    break
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, connections, seen


def _ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 202 Accepted\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def test_the_client_returns_status_and_body_and_reuses_its_connection():
    async def scenario():
        server, connections, seen = await _scripted_server([_ok(b'{"id": 1}'), _ok(b'{"id": 2}')])
        port = server.sockets[0].getsockname()[1]
        client = LoopbackClient("127.0.0.1", port, {"Authorization": "Bearer k"}, connections=4)
        assert await client.post("/v1/messages", b'{"a": 1}') == (202, b'{"id": 1}')
        assert await client.post("/v1/messages", b'{"a": 2}') == (202, b'{"id": 2}')
        assert connections[0] == 1  # kept alive
        assert seen[0].startswith(b"POST /v1/messages HTTP/1.1\r\n")
        assert b"Authorization: Bearer k\r\n" in seen[0] and seen[0].endswith(b'{"a": 1}')
        await client.close()
        server.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_requests_beyond_the_connection_bound_wait_for_a_free_one():
    async def scenario():
        server, connections, _ = await _scripted_server([_ok(b"x")] * 6)
        port = server.sockets[0].getsockname()[1]
        client = LoopbackClient("127.0.0.1", port, {}, connections=2)
        answers = await asyncio.gather(*(client.post("/", b"") for _ in range(6)))
        assert answers == [(202, b"x")] * 6 and connections[0] <= 2
        await client.close()
        server.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_dropped_or_malformed_answer_raises_and_the_pool_goes_on():
    async def scenario():
        server, connections, _ = await _scripted_server(
            [b"", b"NOT HTTP AT ALL\r\n\r\n", _ok(b"fine", b"Connection: close\r\n"), _ok(b"again")])
        port = server.sockets[0].getsockname()[1]
        client = LoopbackClient("127.0.0.1", port, {}, connections=1)
        with pytest.raises(ConnectionError):
            await client.post("/", b"")  # closed without an answer
        with pytest.raises(ConnectionError):
            await client.post("/", b"")  # not HTTP
        assert await client.post("/", b"") == (202, b"fine")
        assert await client.post("/", b"") == (202, b"again")  # "close" was honoured: a new one
        assert connections[0] == 4
        await client.close()
        server.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_the_receiver_answers_what_its_handler_says_over_one_kept_alive_connection():
    async def scenario():
        calls: list[tuple[str, str, bytes]] = []

        def handler(path: str, signature: str, body: bytes) -> int:
            calls.append((path, signature, body))
            return 204 if signature == "good" else 401

        hooks = await HookServer(handler).start()
        reader, writer = await asyncio.open_connection("127.0.0.1", hooks.port)
        for signature in ("good", "bad"):
            writer.write(b"POST /hook HTTP/1.1\r\nHost: x\r\nSmsroute-Signature: %s\r\n"
                         b"Content-Length: 2\r\n\r\n{}" % signature.encode())
            status = await reader.readuntil(b"\r\n\r\n")
            assert status.startswith(b"HTTP/1.1 204" if signature == "good" else b"HTTP/1.1 401")
        assert calls == [("/hook", "good", b"{}"), ("/hook", "bad", b"{}")]
        writer.write(b"GARBAGE\r\n\r\n")  # a malformed request: 400 and the connection closed
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert await reader.read() == b""
        writer.close()
        await hooks.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_closing_the_receiver_does_not_wait_for_kept_alive_clients():
    async def scenario():
        hooks = await HookServer(lambda path, signature, body: 204).start()
        client = LoopbackClient("127.0.0.1", hooks.port, {}, connections=1)
        assert (await client.post("/hook", b"{}"))[0] == 204  # its connection stays open
        await asyncio.wait_for(hooks.close(), 2)
        await client.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))
