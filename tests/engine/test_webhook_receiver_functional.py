"""``smsroute webhook-receiver``: prints each webhook and whether its signature verifies."""

from __future__ import annotations

import io
import threading
import time
import urllib.error
import urllib.request

import pytest

from engine.http.webhooks import SIGNATURE_HEADER, sign
from engine.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.functional

BODY = b'{"id":"evt_1","type":"message.status","data":{"status":"delivered"}}'


@pytest.fixture
def receiver_for(tmp_path):
    started = []

    def make(secret: str | None) -> tuple[WebhookReceiver, io.StringIO]:
        secret_file = None
        if secret is not None:
            secret_file = tmp_path / "webhook.secret"
            secret_file.write_text(secret + "\n")
        out = io.StringIO()
        server = WebhookReceiver("127.0.0.1", 0, secret_file, out)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server, out

    yield make
    for server in started:
        server.shutdown()
        server.server_close()


def post(server: WebhookReceiver, signature: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{server.server_address[1]}/", data=BODY,
                                     headers={SIGNATURE_HEADER: signature,
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_webhook_signed_with_the_secret_is_printed_as_verified_and_answered_204(receiver_for):
    server, out = receiver_for("whsec_right")
    assert post(server, sign(["whsec_right"], BODY, int(time.time()))) == 204
    assert out.getvalue() == f"signature verified: {BODY.decode()}\n"


def test_a_webhook_with_a_wrong_signature_is_printed_as_invalid_and_answered_400(receiver_for):
    server, out = receiver_for("whsec_right")
    assert post(server, sign(["whsec_wrong"], BODY, int(time.time()))) == 400
    assert out.getvalue().startswith("signature INVALID: ")


def test_without_a_secret_file_signatures_are_not_checked(receiver_for):
    server, out = receiver_for(None)
    assert post(server, "t=1,v1=00") == 204
    assert out.getvalue().startswith("signature not checked: ")
