"""The simulated SMSC over real loopback sockets: a third-party client (smpplib), bad input, faults."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions

from bench.smsc import SmscConfig, SmscThread
from engine.smpp import pdu as p
from engine.smpp.receipts import parse_receipt

pytestmark = pytest.mark.functional


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.005)


@pytest.fixture
def smsc():
    with SmscThread(SmscConfig(seed=1)) as s:
        yield s


def _smpplib_client(port):
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    client.connect()
    return client


def test_smpplib_binds_submits_and_receives_a_receipt_for_its_message_id(smsc):
    client = _smpplib_client(smsc.port)
    sent, received = [], []
    client.set_message_sent_handler(lambda pdu: sent.append(pdu))
    client.set_message_received_handler(lambda pdu: received.append(pdu))
    client.bind_transceiver(system_id="smsroute", password="secret")
    client.send_message(
        source_addr_ton=5,
        source_addr_npi=0,
        source_addr="ACME",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="4915112345678",
        short_message=b"hello from smpplib",
        registered_delivery=1,
    )
    while not (sent and received):
        client.read_once()
    message_id = sent[0].message_id.decode()
    receipt = received[0]
    assert receipt.esm_class & 0x04
    assert f"id:{message_id} ".encode() in receipt.short_message
    assert b"stat:DELIVRD" in receipt.short_message
    client.unbind()
    client.disconnect()
    assert [part.params["short_message"] for part in smsc.smsc.parts] == [b"hello from smpplib"]
    assert smsc.smsc.parts[0].params["destination_addr"] == "4915112345678"


def test_smpplib_with_a_wrong_password_is_refused_with_invalid_password(smsc):
    client = _smpplib_client(smsc.port)
    with pytest.raises(smpplib.exceptions.PDUError) as err:
        client.bind_transceiver(system_id="smsroute", password="nope")
    assert err.value.args[1] == p.ESME_RINVPASWD
    client.disconnect()


def _raw(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def _recv_pdu(sock):
    head = b""
    while len(head) < 16:
        chunk = sock.recv(16 - len(head))
        if not chunk:
            return None
        head += chunk
    length = struct.unpack(">I", head[:4])[0]
    body = b""
    while len(body) < length - 16:
        body += sock.recv(length - 16 - len(body))
    return p.decode_pdu(head + body)


def _bind(sock, command=p.BIND_TRANSCEIVER):
    sock.sendall(
        p.encode_pdu(
            p.Pdu(
                command,
                1,
                0,
                {"system_id": "smsroute", "password": "secret", "interface_version": 0x34},
            )
        )
    )
    resp = _recv_pdu(sock)
    assert (resp.command_id, resp.status) == (command | p.RESP, 0)


def test_an_unknown_command_is_answered_with_generic_nack_and_the_session_goes_on(smsc):
    with _raw(smsc.port) as sock:
        _bind(sock)
        sock.sendall(struct.pack(">IIII", 16, 0x00000104, 0, 42))
        nack = _recv_pdu(sock)
        assert (nack.command_id, nack.status, nack.sequence) == (
            p.GENERIC_NACK,
            p.ESME_RINVCMDID,
            42,
        )
        sock.sendall(p.encode_pdu(p.Pdu(p.ENQUIRE_LINK, 43)))
        assert _recv_pdu(sock).command_id == p.ENQUIRE_LINK | p.RESP


def test_an_oversized_length_gets_generic_nack_and_the_connection_closed(smsc):
    with _raw(smsc.port) as sock:
        _bind(sock)
        sock.sendall(struct.pack(">IIII", p.MAX_PDU_LEN + 1, p.SUBMIT_SM, 0, 7))
        nack = _recv_pdu(sock)
        assert (nack.command_id, nack.sequence) == (p.GENERIC_NACK, 7)
        assert _recv_pdu(sock) is None
    _wait(lambda: smsc.smsc.counters["malformed_oversized"] == 1)


def test_a_submit_before_binding_is_refused_with_invalid_bind_status(smsc):
    with _raw(smsc.port) as sock:
        sock.sendall(p.encode_pdu(p.Pdu(p.SUBMIT_SM, 3, 0, {"destination_addr": "49151"})))
        resp = _recv_pdu(sock)
        assert (resp.command_id, resp.status) == (p.SUBMIT_SM | p.RESP, p.ESME_RINVBNDSTS)


def test_receipts_can_precede_the_resp_and_use_another_id_format_with_tlvs():
    config = SmscConfig(
        receipts_before_resp=True,
        id_format="hex",
        receipt_id_format="padded_decimal",
        receipt_tlvs=True,
        receipt_date_digits=12,
        receipt_text_label="Text:",
        latency=(0.05, 0.05),
    )
    with SmscThread(config) as smsc, _raw(smsc.port) as sock:
        _bind(sock)
        sock.sendall(
            p.encode_pdu(
                p.Pdu(p.SUBMIT_SM, 5, 0, {"destination_addr": "49151", "registered_delivery": 1})
            )
        )
        first, second = _recv_pdu(sock), _recv_pdu(sock)
        assert first.command_id == p.DELIVER_SM and second.command_id == p.SUBMIT_SM | p.RESP
        receipt = parse_receipt(first)
        assert int(receipt.message_id) == int(second.params["message_id"], 16)
        assert receipt.message_id.startswith("0") and len(receipt.done_date) == 12


def test_the_error_mix_and_throttle_answer_the_configured_statuses():
    config = SmscConfig(error_rates={p.ESME_RINVDSTADR: 1.0}, receipts=False)
    with SmscThread(config) as smsc, _raw(smsc.port) as sock:
        _bind(sock, p.BIND_TRANSMITTER)
        sock.sendall(p.encode_pdu(p.Pdu(p.SUBMIT_SM, 5, 0, {"destination_addr": "49151"})))
        assert _recv_pdu(sock).status == p.ESME_RINVDSTADR
        smsc.call(setattr, smsc.smsc.config, "error_rates", {})
        smsc.call(setattr, smsc.smsc.config, "throttle", 2)
        for seq in range(10, 14):
            sock.sendall(p.encode_pdu(p.Pdu(p.SUBMIT_SM, seq, 0, {"destination_addr": "49151"})))
        statuses = [_recv_pdu(sock).status for _ in range(4)]
        assert p.ESME_RTHROTTLED in statuses and statuses[0] == p.ESME_ROK


def test_receipts_wait_for_a_receiver_when_the_transmitter_cannot_take_them():
    with SmscThread(SmscConfig()) as smsc:
        with _raw(smsc.port) as tx:
            _bind(tx, p.BIND_TRANSMITTER)
            tx.sendall(
                p.encode_pdu(
                    p.Pdu(
                        p.SUBMIT_SM, 5, 0, {"destination_addr": "49151", "registered_delivery": 1}
                    )
                )
            )
            mid = _recv_pdu(tx).params["message_id"]
        with _raw(smsc.port) as rx:
            _bind(rx, p.BIND_RECEIVER)
            receipt = _recv_pdu(rx)
            assert parse_receipt(receipt).message_id == mid


def test_close_connections_drops_every_session_for_fault_injection(smsc):
    with _raw(smsc.port) as sock:
        _bind(sock)
        closed = threading.Event()

        def reader():
            if _recv_pdu(sock) is None:
                closed.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        smsc.call(smsc.smsc.close_connections)
        assert closed.wait(5)


def test_a_receipt_refused_with_a_temporary_error_is_delivered_again_after_a_backoff():
    """As a real SMSC does: a deliver_sm answered 0x64 ESME_RX_T_APPN (or another temporary status) comes
    again, later each time; answered 0 it is done; a permanent error (0x65) ends it. Before, the simulator
    forgot a receipt whatever its deliver_sm_resp said, so an ESME that could not store it lost it."""
    config = SmscConfig(receipt_retry_seconds=(0.2, 0.3))
    with SmscThread(config) as smsc, _raw(smsc.port) as sock:
        _bind(sock)
        for seq in (5, 6):
            sock.sendall(p.encode_pdu(p.Pdu(p.SUBMIT_SM, seq, 0, {"destination_addr": "49151",
                                                                  "registered_delivery": 1})))
        mids, receipts = set(), []
        while len(mids) < 2 or len(receipts) < 2:
            pdu = _recv_pdu(sock)
            if pdu.command_id == p.SUBMIT_SM | p.RESP:
                mids.add(pdu.params["message_id"])
            else:
                receipts.append((pdu, time.monotonic()))
        (keep, _), (drop, _) = receipts
        sock.sendall(p.encode_pdu(p.response_to(keep, p.ESME_RX_T_APPN, message_id="")))
        sock.sendall(p.encode_pdu(p.response_to(drop, p.ESME_RX_P_APPN, message_id="")))
        refused_at = time.monotonic()
        seen = []
        for status in (p.ESME_RSYSERR, p.ESME_ROK):  # 0x08 is temporary too; then taken
            again = _recv_pdu(sock)
            seen.append(time.monotonic() - refused_at)
            assert again.command_id == p.DELIVER_SM and again.sequence != keep.sequence
            assert parse_receipt(again).message_id == parse_receipt(keep).message_id
            sock.sendall(p.encode_pdu(p.response_to(again, status, message_id="")))
            refused_at = time.monotonic()
        assert seen[0] >= 0.15 and seen[1] >= 0.25  # backoff: 0.2 s, then doubled up to the 0.3 s cap
        sock.settimeout(0.6)
        with pytest.raises(socket.timeout):  # neither the delivered nor the permanently refused one
            _recv_pdu(sock)
    counters = smsc.smsc.counters
    assert (counters["receipts_retried"], counters["receipts_refused"]) == (2, 1)
