"""Optional TLS on both servers: TLS 1.2 minimum, HSTS on every answer; a self-signed cert made here."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.engine.http.conftest import Client, start_engine


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def tls_engine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(tmp)
    engine = start_engine(tmp, tls_cert=cert, tls_key=key)
    client_ctx = ssl.create_default_context(cafile=cert)
    yield engine, client_ctx
    engine.stop()


def test_both_servers_answer_over_tls_with_hsts(tls_engine):
    engine, ctx = tls_engine
    for port, path in ((engine.http.customer_port, "/v1/openapi.json"),
                       (engine.http.control_port, "/healthz")):
        status, headers, _ = Client(port, tls=ctx).request("GET", path)
        assert status == 200
        assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    status, headers, _ = Client(engine.http.customer_port, tls=ctx).request("GET", "/v1/balance")
    assert status == 401 and "Strict-Transport-Security" in headers  # errors too


def test_the_negotiated_version_is_at_least_tls_1_2(tls_engine):
    engine, ctx = tls_engine
    conn = http.client.HTTPSConnection("127.0.0.1", engine.http.customer_port, context=ctx)
    try:
        conn.connect()
        assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        conn.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_client_limited_to_tls_1_1_is_refused(tls_engine):
    engine, ctx = tls_engine
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    try:
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    conn = http.client.HTTPSConnection("127.0.0.1", engine.http.customer_port, context=old)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        conn.connect()
    conn.close()


def test_plain_http_is_not_served_on_a_tls_port(tls_engine):
    engine, _ = tls_engine
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        Client(engine.http.customer_port).request("GET", "/v1/openapi.json")
