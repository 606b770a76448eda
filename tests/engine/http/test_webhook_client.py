"""The webhook client against real receivers on loopback: answers, kept-alive connections, the response
forms a receiver may send (content-length, chunked, close-delimited, informational, malformed),
redirects not followed, time-outs, header injection, and TLS (verified, hostname checked)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import pytest
from aiohttp import web

from engine.http.webhook_client import WebhookClient
from tests.engine.http.test_tls_functional import _self_signed

pytestmark = pytest.mark.functional


async def _aiohttp_receiver(handler, ssl_context=None) -> tuple[web.AppRunner, int, list]:
    """An aiohttp receiver; ``peers`` gets the client's address of every request."""
    peers: list = []

    async def hook(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername"))
        return await handler(request)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1], peers


@contextlib.asynccontextmanager
async def _client(**options):
    """A client for loopback receivers (5 s time-out unless given), closed at the end."""
    client = WebhookClient(**{"timeout_s": 5, "allow_private_networks": True, **options})
    try:
        yield client
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def _serving(serve):
    """A raw asyncio receiver running ``serve`` per connection; yields its port, closed at the end."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """One request (head and body) as the client sends it: always with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    return head + await reader.readexactly(length)


async def _raw_receiver(answer: bytes) -> tuple[asyncio.Server, int, list]:
    """A receiver that answers every request with ``answer`` verbatim (closing the connection after it
    when the answer says so); ``heads`` gets ``(connection number, request)`` of each request."""
    heads: list = []
    connections = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        number = connections[0]
        try:
            while True:
                heads.append((number, await _read_request(reader)))
                writer.write(answer)
                await writer.drain()
                if b"Connection: close" in answer or b"Content-Length" not in answer \
                        and b"chunked" not in answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], heads


def test_posts_reuse_one_kept_alive_connection_and_carry_body_and_headers():
    got = []

    async def handler(request):
        got.append((await request.read(), request.headers.get("Smsroute-Signature"),
                    request.headers.get("Host")))
        return web.Response(status=200, text="ok")

    async def scenario():
        runner, port, peers = await _aiohttp_receiver(handler)
        try:
            async with _client() as client:
                answers = [await client.post(f"http://127.0.0.1:{port}/hook", b'{"n":%d}' % i,
                                             {"Smsroute-Signature": "t=1,v1=ab"}) for i in range(3)]
        finally:
            await runner.cleanup()
        return answers, peers, port

    answers, peers, port = asyncio.run(scenario())
    assert answers == [(200, None)] * 3
    assert got == [(b'{"n":%d}' % i, "t=1,v1=ab", f"127.0.0.1:{port}") for i in range(3)]
    assert len(set(peers)) == 1  # one connection for all three


def test_status_and_retry_after_are_returned_and_a_redirect_is_not_followed():
    answers = {"/gone": web.Response(status=410), "/busy": web.Response(
        status=503, headers={"Retry-After": "7"}), "/moved": web.Response(
        status=302, headers={"Location": "http://127.0.0.1:1/elsewhere"})}
    seen = []

    async def handler(request):
        seen.append(request.query.get("p"))
        return answers[request.query["p"]]

    async def scenario():
        runner, port, _ = await _aiohttp_receiver(handler)
        try:
            async with _client() as client:
                return [await client.post(f"http://127.0.0.1:{port}/hook?p={p}", b"{}", {})
                        for p in ("/gone", "/busy", "/moved")]
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario()) == [(410, None), (503, "7"), (302, None)]
    assert seen == ["/gone", "/busy", "/moved"]  # the redirect's target was never asked


@pytest.mark.parametrize("answer,reused", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", True),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", False),
    (b"HTTP/1.0 200 OK\r\n\r\nuntil the connection closes", False),
], ids=["chunked", "informational-first", "connection-close", "close-delimited"])
def test_every_response_form_is_read_and_a_connection_is_reused_only_when_it_may_be(answer, reused):
    async def scenario():
        server, port, heads = await _raw_receiver(answer)
        try:
            async with _client() as client:
                first = await client.post(f"http://127.0.0.1:{port}/hook", b"{}", {})
                await asyncio.sleep(0)  # (a body after the head arrives in a later read)
                second = await client.post(f"http://127.0.0.1:{port}/hook", b"{}", {})
        finally:
            server.close()
        return first, second, heads

    first, second, heads = asyncio.run(scenario())
    status = 204 if b"204" in answer else 200
    assert first == second == (status, None)
    assert len(heads) == 2
    assert (heads[0][0] == heads[1][0]) is reused  # the same connection only when it could be


def test_a_malformed_answer_is_an_error_and_its_connection_is_not_reused():
    async def scenario():
        server, port, heads = await _raw_receiver(b"NOT HTTP AT ALL\r\n\r\n")
        try:
            async with _client() as client:
                with pytest.raises(ConnectionError):
                    await client.post(f"http://127.0.0.1:{port}/hook", b"{}", {})
                assert not any(client._idle.values())
        finally:
            server.close()

    asyncio.run(scenario())


def test_a_receiver_that_never_answers_times_out():
    async def scenario():
        async def silent(reader, writer):
            await reader.read()  # holds the connection, never answers

        async with _serving(silent) as port, _client(timeout_s=0.3) as client:
            with pytest.raises(TimeoutError):
                await client.post(f"http://127.0.0.1:{port}/hook", b"{}", {})
            assert client.idle_connections == 0  # a timed-out connection is closed, never reused

    asyncio.run(scenario())


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent():
    async def scenario():
        async with _client() as client:
            with pytest.raises(ValueError):
                await client.post("http://127.0.0.1:9/hook", b"{}", {"X-Evil": "a\r\nInjected: 1"})

    asyncio.run(scenario())


def test_https_is_verified_against_the_trusted_roots_and_the_host_name(tmp_path):
    cert, key = _self_signed(tmp_path)  # a certificate for 127.0.0.1 only
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def handler(request):
        await request.read()
        return web.Response(status=200)

    async def scenario():
        runner, port, _ = await _aiohttp_receiver(handler, server_ctx)
        try:
            async with _client(tls=ssl.create_default_context(cafile=cert)) as trusting, \
                    _client() as default:
                ok = await trusting.post(f"https://127.0.0.1:{port}/hook", b"{}", {})
                with pytest.raises(ssl.SSLCertVerificationError):  # not a trusted root
                    await default.post(f"https://127.0.0.1:{port}/hook", b"{}", {})
                with pytest.raises(ssl.SSLCertVerificationError):  # trusted, not this host's name
                    await trusting.post(f"https://localhost:{port}/hook", b"{}", {})
        finally:
            await runner.cleanup()
        return ok

    assert asyncio.run(scenario()) == (200, None)


def test_a_kept_alive_connection_the_receiver_dropped_is_replaced_at_once():
    """The receiver answers, keeps the connection, then drops it when the next request comes (as one
    whose idle time-out struck just then): the request goes again on a new connection, no error."""
    connections: list = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        if len(connections) == 1:
            await reader.readuntil(b"\r\n\r\n")  # the next request on this connection: dropped
        writer.close()

    async def scenario():
        async with _serving(serve) as port, _client() as client:
            return [await client.post(f"http://127.0.0.1:{port}/hook", b"{}", {}) for _ in range(2)]

    assert asyncio.run(scenario()) == [(200, None), (200, None)]
    assert len(connections) == 2


async def _until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def test_idle_connections_are_closed_after_their_idle_time_and_bounded_in_all():
    closed: list = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await _read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            closed.append(writer)  # the client closed its end
        writer.close()

    async def scenario():
        async with contextlib.AsyncExitStack() as stack:
            ports = [await stack.enter_async_context(_serving(serve)) for _ in range(3)]
            client = await stack.enter_async_context(_client(idle_seconds=0.3, max_idle_total=2))
            for port in ports:  # three origins, one kept-alive connection each
                await client.post(f"http://127.0.0.1:{port}/hook", b"{}", {})
            assert client.idle_connections == 2  # the oldest was closed to stay within the bound
            await _until(lambda: len(closed) == 1)
            await _until(lambda: client.idle_connections == 0 and len(closed) == 3)  # idle time

    asyncio.run(scenario())
