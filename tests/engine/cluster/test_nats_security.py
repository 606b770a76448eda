"""NATS between the processes of a cluster: a local cluster's server takes only its own processes, a
deployment across hosts is reached over verified TLS with credentials from files, and a ``tls://``
connection is never downgraded to plaintext (nats-py 2.16 would send the credentials in clear to a server
that does not ask for TLS: ``engine.cluster.nats_security.SecureClient`` refuses)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import threading
from pathlib import Path

import nats
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine import messages as m
from engine.cluster.nats_security import NatsSecurity
from engine.cluster.nats_server import NatsServer
from engine.cluster.transport import Transport, TransportError
from engine.config import NatsSettings, load_settings
from engine.errors import ConfigError
from tests.waiting import wait_for

# A refused connection is retried until the start's deadline; the refusal is then named as the last error.
# Long enough for a loaded machine to make at least one attempt (at 1.5 s one failed in a loaded run).
REFUSED_WITHIN_S = 4.0

# --- configuration ------------------------------------------------------------------------------------


@pytest.mark.parametrize("table, why", [
    ({"token": "s3cret"}, "never go in the TOML"),
    ({"password": "s3cret", "user": "u"}, "never go in the TOML"),
    ({"cert_file": "/x.pem"}, "go together"),
    ({"user": "u"}, "go together"),
    ({"token_file": "/t", "user": "u", "password_file": "/p"}, "alternatives"),
    ({"ca_fille": "/ca.pem"}, "did you mean 'ca_file'"),
])
def test_the_nats_table_refuses_secrets_and_half_settings(table, why):
    with pytest.raises(ConfigError, match=why):
        load_settings(None, {"nats": table})


@pytest.mark.parametrize("servers, why", [
    (["nats://10.1.2.3:4222"], "beyond loopback is reached over TLS only"),
    (["nats://nats.example.com:4222"], "beyond loopback is reached over TLS only"),
    (["nats://user:pw@127.0.0.1:4222"], "credentials do not go in the URL"),
    (["tls://a.example.com:4222", "nats://127.0.0.1:4222"], "mixing"),
    (["ws://127.0.0.1:4222"], "scheme"),
])
def test_a_plaintext_or_credentialed_url_beyond_loopback_is_refused(servers, why):
    with pytest.raises(ConfigError, match=why):
        NatsSecurity.for_servers(servers, NatsSettings())


def test_loopback_needs_no_tls_and_tls_urls_want_it(tmp_path):
    assert not NatsSecurity.for_servers(["nats://127.0.0.1:4222"], NatsSettings()).wants_tls
    secure = NatsSecurity.for_servers(["tls://nats.example.com:4222"], NatsSettings())
    assert secure.wants_tls and secure.tls is not None
    with pytest.raises(ConfigError, match="for tls:// servers"):
        NatsSecurity.for_servers(["nats://127.0.0.1:4222"], NatsSettings(ca_file=str(tmp_path)))


# --- a local cluster's own server ---------------------------------------------------------------------


def _pair(servers: list[str], security: NatsSecurity | None, timeout: float = 10.0):
    """Two transports ``a`` and ``b``; what ``b`` receives is collected."""
    got: list[str] = []
    b = Transport(servers, "b", lambda target, frame, msg: got.append(target) or True,
                  security=security).start(timeout)
    try:
        a = Transport(servers, "a", lambda *_: True, security=security).start(timeout)
    except BaseException:
        b.stop()
        raise
    return a, b, got


def _frames_flow(a: Transport, b: Transport, got: list[str]) -> None:
    a.ref("b", "ledger").tell(m.encode(m.Flush()))
    wait_for(lambda: got == ["ledger"], "the frame from a reached b")


async def _connect(url: str, **kw) -> None:
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False, **kw)
    await nc.close()


def test_a_local_clusters_server_takes_only_clients_holding_its_token(tmp_path):
    token_file = tmp_path / "client.token"
    with NatsServer(log_dir=tmp_path / "nats", token_file=token_file) as server:
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        assert token not in " ".join(server.proc.args)  # not on the server's command line (ps)
        with pytest.raises(Exception, match="Authorization Violation"):
            asyncio.run(_connect(server.url))  # another local user: cannot read or inject
        with pytest.raises(Exception, match="Authorization Violation"):
            asyncio.run(_connect(server.url, token="guessed"))
        security = NatsSecurity.for_servers([server.url], NatsSettings(), token_file=str(token_file))
        a, b, got = _pair([server.url], security)
        try:
            _frames_flow(a, b, got)
            server.stop()  # a restart keeps the token: the clients get back in
            server.start()
            wait_for(lambda: a.connected and b.connected, "both reconnected")
            got.clear()
            _frames_flow(a, b, got)
        finally:
            a.stop()
            b.stop()


def test_a_configured_token_file_authenticates_against_a_deployment(tmp_path):
    token = "deployment-token-Zq81"
    conf = tmp_path / "server.conf"
    conf.write_text(f'authorization {{\n  token: "{token}"\n}}\n')
    (tmp_path / "token").write_text(token + "\n")
    with NatsServer(extra_args=["-c", str(conf)]) as server:
        settings = load_settings(None, {"nats": {"token_file": str(tmp_path / "token")}}).nats
        a, b, got = _pair([server.url], NatsSecurity.for_servers([server.url], settings))
        try:
            _frames_flow(a, b, got)
        finally:
            a.stop()
            b.stop()
        with pytest.raises(TransportError, match="Authorization Violation"):
            Transport([server.url], "x", lambda *_: True).start(timeout=REFUSED_WITHIN_S)


# --- TLS across hosts ---------------------------------------------------------------------------------


def _pki(where: Path) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""
    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key, issuer_name, issuer_key, *, ca: bool = False, sans=None):
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(
            NameOID.COMMON_NAME, subject)])).issuer_name(issuer_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    out = {}

    def write(name: str, obj) -> None:
        path = where / f"{name}.pem"
        if isinstance(obj, x509.Certificate):
            path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
        else:
            path.write_bytes(obj.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        out[name] = str(path)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smsroute test CA")])
    ca = cert("smsroute test CA", ca_key, ca_name, ca_key, ca=True)
    write("ca", ca)
    for name, sans in (("server", [x509.DNSName("localhost"),
                                   x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       ("client", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        write(name, cert(name, key, ca_name, ca_key, sans=sans))
        write(f"{name}-key", key)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])
    write("other-ca", cert("another CA", other_key, other_name, other_key, ca=True))
    return out


def test_tls_with_client_certificates_across_hosts(tmp_path):
    """The server verifies the client's certificate, the client the server's (CA and name)."""
    pki = _pki(tmp_path)
    with NatsServer(extra_args=["--tls", "--tlscert", pki["server"], "--tlskey", pki["server-key"],
                                "--tlsverify", "--tlscacert", pki["ca"]]) as server:
        url = f"tls://127.0.0.1:{server.port}"
        mutual = NatsSettings(ca_file=pki["ca"], cert_file=pki["client"], key_file=pki["client-key"])
        a, b, got = _pair([url], NatsSecurity.for_servers([url], mutual))
        try:
            _frames_flow(a, b, got)
            assert a._nc._transport._io_writer.get_extra_info("ssl_object").version() in (
                "TLSv1.2", "TLSv1.3")
        finally:
            a.stop()
            b.stop()
        for settings, why in (
            (NatsSettings(ca_file=pki["other-ca"], cert_file=pki["client"], key_file=pki["client-key"]),
             "CERTIFICATE_VERIFY_FAILED"),  # a server we cannot verify: not ours
            # no client certificate: the server refuses us (its TLS 1.3 alert, or under load only the
            # reset that follows it, is the client's last error)
            (NatsSettings(ca_file=pki["ca"]), "CERTIFICATE_REQUIRED|ConnectionResetError|BrokenPipeError|SSLEOFError"),
        ):
            with pytest.raises(TransportError, match=why):
                Transport([url], "x", lambda *_: True,
                          security=NatsSecurity.for_servers([url], settings)).start(timeout=REFUSED_WITHIN_S)


class _PlaintextServer:
    """Speaks just enough NATS to invite a CONNECT without ever asking for TLS; records what it gets."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b'INFO {"server_id":"evil","version":"2.10.0","max_payload":1048576,'
                             b'"auth_required":true}\r\n')
                conn.settimeout(0.5)
                try:
                    while chunk := conn.recv(4096):
                        self.received += chunk
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def test_a_tls_url_is_never_downgraded_to_plaintext(tmp_path):
    (tmp_path / "token").write_text("the-deployment-token\n")
    server = _PlaintextServer()
    try:
        url = f"tls://127.0.0.1:{server.port}"
        settings = NatsSettings(token_file=str(tmp_path / "token"))
        with pytest.raises(TransportError, match="InsecureConnectionRefused"):
            Transport([url], "x", lambda *_: True,
                      security=NatsSecurity.for_servers([url], settings)).start(timeout=REFUSED_WITHIN_S)
        assert b"the-deployment-token" not in server.received
        assert b"CONNECT" not in server.received
    finally:
        server.close()
