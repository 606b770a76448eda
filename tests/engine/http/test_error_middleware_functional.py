"""The error middleware tells a client that hung up from a server-side failure of the same class."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web

from engine.http.errors import error_middleware


async def _reset_by_a_backend(request: web.Request) -> web.Response:
    raise ConnectionResetError("a socket the handler used (not the client's) was reset")


def test_a_reset_of_another_socket_with_the_client_still_there_stays_an_error_with_its_traceback(caplog):
    caplog.set_level(logging.DEBUG)

    async def scenario():
        app = web.Application(middlewares=[error_middleware])
        app.router.add_get("/x", _reset_by_a_backend)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with aiohttp.ClientSession() as session, \
                    session.get(f"http://127.0.0.1:{port}/x") as resp:
                return resp.status, await resp.json()
        finally:
            await runner.cleanup()

    status, body = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert status == 500 and body["error"]["code"] == "internal_error"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "unhandled error" in errors[0].getMessage() and errors[0].exc_info
    assert not [r for r in caplog.records if "disconnected" in r.getMessage()]
