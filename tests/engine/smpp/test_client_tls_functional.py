"""The SMPP connector over TLS to the simulated SMSC, with a throw-away self-signed certificate."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.smsc import SimulatedSmsc, SmscConfig
from engine.smpp import smsc_carrier_settings
from engine.smpp.client import SmppConnector
from engine.smpp.submit import SubmitBuilder

pytestmark = pytest.mark.functional


@pytest.fixture
def cert_files(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smsc.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


async def _exchange(cert_path: str, key_path: str, ca_file: str) -> tuple[list, list, dict]:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    smsc = SimulatedSmsc(SmscConfig(seed=1))
    await smsc.start(ssl=server_ctx)
    responses, receipts = [], []
    settings = smsc_carrier_settings("127.0.0.1", smsc.port, tls=True, tls_ca_file=ca_file,
                                     reconnect_min_seconds=0.05, reconnect_max_seconds=0.1)
    c = SmppConnector("tls", settings, responses.extend, receipts.extend, lambda *a: None)
    await c.start()
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while not (c.available or c.errors["connect_failed"]) and (
                asyncio.get_running_loop().time() < deadline):
            await asyncio.sleep(0.005)
        if c.available:
            c.submit(SubmitBuilder().build("t1", "+4915100000001", "ACME", "over TLS"))
            while not receipts and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.005)
        return responses, receipts, c.stats()
    finally:
        await c.stop(timeout=0.5)
        await smsc.stop()


def test_a_tls_bind_to_a_trusted_certificate_carries_a_message_and_its_receipt(cert_files):
    responses, receipts, _ = asyncio.run(_exchange(*cert_files, ca_file=cert_files[0]))
    assert [r.outcome for r in responses] == ["ok"]
    assert [r.state for r in receipts] == ["DELIVRD"]


def test_a_tls_bind_refuses_an_untrusted_certificate(cert_files, tmp_path):
    responses, receipts, stats = asyncio.run(_exchange(*cert_files, ca_file=""))
    assert responses == [] and not stats["available"]
    assert stats["errors"]["connect_failed"] >= 1
