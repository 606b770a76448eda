"""``smsroute`` as an operator meets it: flags, version, help, and start-up failures as one clear line.

Every test runs the real ``smsroute`` console script in a subprocess. A failure an operator can fix must
be exactly one line on stderr (``smsroute: <code>: <what to do>``), exit status 2, and no traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest

from engine.cluster.nats_server import free_ports
from tests.engine.cli_support import Running, smsroute
from tests.engine.disk_full_support import needs_tiny_tmpfs

pytestmark = pytest.mark.functional

RST_MARKUP = re.compile(r"``|:(func|class|mod|meth|data|attr):`")


def assert_one_line_failure(result: subprocess.CompletedProcess, code: str) -> str:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{result.stderr}"
    assert lines[0].startswith(f"smsroute: {code}: "), lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def test_version_prints_the_installed_package_version_and_its_cluster_protocol():
    from engine.cluster.protocol import PROTOCOL

    result = smsroute("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == (f"smsroute {metadata.version('smsroute')} "
                                     f"(cluster protocol {PROTOCOL})")


@pytest.mark.parametrize("command", [[], ["run"], ["segments"], ["webhook-receiver"], ["bench"]])
def test_help_texts_are_plain_text_without_restructuredtext_markup(command):
    result = smsroute(*command, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: smsroute")
    assert not RST_MARKUP.search(result.stdout), result.stdout


def test_run_listens_where_host_and_port_flags_say_and_stops_on_sigterm(tmp_path):
    customer, control = free_ports(2)
    with Running("run", "--data-dir", str(tmp_path / "data"), "--host", "127.0.0.1",
                 "--customer-port", str(customer), "--control-port", str(control)) as run:
        assert run.wait_for_line("customer API:") == f"customer API: http://127.0.0.1:{customer}/v1"
        assert run.wait_for_line("control port:") == f"control port: http://127.0.0.1:{control}/"
        with urllib.request.urlopen(f"http://127.0.0.1:{customer}/v1/openapi.json", timeout=10) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{control}/healthz", timeout=10) as r:
            assert r.status == 200
        assert run.stop() == 0
        assert run.lines[-1] == "smsroute stopped"


@pytest.mark.parametrize("flag", ["--customer-port", "--control-port"])
def test_a_busy_port_is_one_line_naming_the_port_and_the_flag_that_changes_it(tmp_path, flag):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = "--control-port" if flag == "--customer-port" else "--customer-port"
        result = smsroute("run", "--data-dir", str(tmp_path / "data"), flag, str(port), other, "0")
    line = assert_one_line_failure(result, "cannot_listen")
    assert f"127.0.0.1:{port}" in line and "already in use" in line and flag in line


def test_a_port_flag_that_is_not_a_port_is_refused_by_the_parser(tmp_path):
    result = smsroute("run", "--data-dir", str(tmp_path / "data"), "--customer-port", "80800")
    assert result.returncode == 2 and "not a TCP port" in result.stderr
    assert not (tmp_path / "data").exists()


def test_a_second_run_on_a_data_directory_in_use_is_refused_until_the_first_stops(tmp_path):
    data = str(tmp_path / "data")
    with Running("run", "--data-dir", data, "--no-http") as first:
        first.wait_for_line("smsroute running")
        second = smsroute("run", "--data-dir", data, "--no-http")
        line = assert_one_line_failure(second, "data_dir_in_use")
        assert data in line and f"pid {first.proc.pid}" in line
        assert first.proc.poll() is None  # the first one is untouched
        assert first.stop() == 0
    with Running("run", "--data-dir", data, "--no-http") as third:  # the lock went with the first
        third.wait_for_line("smsroute running")
        assert third.stop() == 0


def test_a_missing_config_file_is_one_line(tmp_path):
    result = smsroute("run", "--data-dir", str(tmp_path / "data"), "--config",
                      str(tmp_path / "missing.toml"))
    line = assert_one_line_failure(result, "invalid_config")
    assert "missing.toml" in line and "No such file" in line


def test_an_unknown_config_key_is_one_line_naming_it(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[carriers.fra-x]\npop = "fra"\nkind = "smpp"\nwindw = 20\n')
    line = assert_one_line_failure(
        smsroute("run", "--data-dir", str(tmp_path / "data"), "--config", str(config)),
        "invalid_config")
    assert "'windw'" in line and "[carriers.fra-x]" in line and "did you mean 'window'?" in line


_ONE_ROUTE = '[[routes]]\nmatch = ["DE"]\npop = "fra"\ncarriers = [{{ carrier = "sim"{} }}]\n'


@pytest.mark.parametrize(("carrier", "route", "needle"), [
    ("", ", weight = 1000000000000000000",
     "routes[0].carriers[0].weight = 1000000000000000000 must be an integer between 1 and 1000000"),
    ("", ", priority = 1000000000000000000",
     "routes[0].carriers[0].priority = 1000000000000000000 must be an integer between 0 and 10000"),
    ("latency = 1e12\n", "", "carriers.sim.latency = 1e+12 must be between 0 and 3600000 (ms)"),
    ('receipt_delay = { distribution = "uniform", min_ms = 1, max_ms = 1e12 }\n', "",
     "carriers.sim.receipt_delay.max_ms = 1e+12 must be between 0 and 3600000 (ms)"),
])
def test_an_absurd_route_weight_priority_or_simulated_delay_is_refused_at_start_naming_it(
        tmp_path, carrier, route, needle):
    config = tmp_path / "c.toml"
    config.write_text(f'[carriers.sim]\npop = "fra"\n{carrier}\n' + _ONE_ROUTE.format(route))
    line = assert_one_line_failure(
        smsroute("run", "--data-dir", str(tmp_path / "data"), "--config", str(config)),
        "invalid_config")
    assert needle in line, line


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_a_tls_file_that_does_not_load_is_one_line_and_nothing_is_started(tmp_path, content):
    cert = tmp_path / "cert.pem"
    if content is not None:
        cert.write_text(content)
    config = tmp_path / "tls.toml"
    config.write_text(f'[http]\ntls_cert = "{cert}"\ntls_key = "{cert}"\n')
    result = smsroute("run", "--data-dir", str(tmp_path / "data"), "--config", str(config))
    line = assert_one_line_failure(result, "invalid_config")
    assert str(cert) in line
    assert ("No such file" in line) if content is None else ("not a PEM certificate" in line)
    assert not (tmp_path / "data").exists()  # refused before any store was opened


def test_a_data_directory_that_is_a_file_is_one_line(tmp_path):
    path = tmp_path / "data"
    path.write_text("oops")
    line = assert_one_line_failure(smsroute("run", "--data-dir", str(path), "--no-http"),
                                   "data_dir_unusable")
    assert "is not a directory" in line


def test_an_unreadable_data_directory_is_one_line_saying_who_must_be_able_to_read_it():
    base = Path(tempfile.mkdtemp(prefix="smsroute-perm-"))
    try:
        data = base / "data"
        data.mkdir(mode=0o700)
        prefix: tuple[str, ...] = ()
        if os.geteuid() == 0:
            # root reads everything: give the directory to nobody and drop root's override of
            # file permissions, which is what running smsroute as a service user amounts to
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv (util-linux) to drop CAP_DAC_*")
            os.chown(data, 65534, 65534)
            caps = "-dac_override,-dac_read_search"
            prefix = ("setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", "--")
        else:
            data.chmod(0)
        result = smsroute("run", "--data-dir", str(data), "--no-http", prefix=prefix)
        line = assert_one_line_failure(result, "data_dir_unusable")
        assert "Permission denied" in line and "readable and writable" in line
    finally:
        (base / "data").chmod(0o700)
        shutil.rmtree(base, ignore_errors=True)


FULL_DISK_SCRIPT = """
set -eu
mount -t tmpfs -o size=4m tmpfs "$MNT"
"$SMSROUTE_PYTHON" -c "from engine import Engine; Engine.start(data_dir='$MNT/data').stop()"
dd if=/dev/zero of="$MNT/fill" bs=64k 2>/dev/null || true   # until the disk is full
timeout 60 "$SMSROUTE" run --no-http --data-dir "$MNT/data" 2>"$OUT/restart.err" \
  || echo $? > "$OUT/restart.rc"
rm -rf "$MNT/data"
dd if=/dev/zero of="$MNT/fill2" bs=4k 2>/dev/null || true   # what the data directory held, too
timeout 60 "$SMSROUTE" run --no-http --data-dir "$MNT/data" 2>"$OUT/first.err" \
  || echo $? > "$OUT/first.rc"
"""


@needs_tiny_tmpfs
def test_a_full_disk_at_start_up_is_one_line_for_a_restart_and_for_a_first_start(tmp_path):
    from tests.engine.cli_support import SMSROUTE

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {**os.environ, "MNT": str(mnt), "OUT": str(tmp_path), "SMSROUTE": SMSROUTE,
           "SMSROUTE_PYTHON": str(Path(SMSROUTE).with_name("python"))}
    # the tmpfs lives in a private mount namespace: it disappears with the script
    done = subprocess.run(["unshare", "-m", "bash", "-c", FULL_DISK_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in ("restart", "first"):
        rc = (tmp_path / f"{name}.rc").read_text().strip()
        err = (tmp_path / f"{name}.err").read_text()
        fake = subprocess.CompletedProcess([], int(rc), "", err)
        line = assert_one_line_failure(fake, "store_full")
        assert "no space left" in line and f"{mnt}/data" in line


def test_a_second_process_on_a_key_directory_in_use_is_refused_and_kill_9_frees_it(tmp_path):
    """Two engines (or two ``--role worker`` on one host) given one absolute ``[keys] dir`` each rewrote
    the whole key ring with what they knew, dropping each other's keys: what one sealed no longer opened
    after its restart. The second is refused naming the directory; a ``kill -9`` of the first frees it."""
    keys = tmp_path / "keys"
    config = tmp_path / "shared-keys.toml"
    config.write_text(f'[keys]\ndir = "{keys}"\n')
    first = Running("run", "--data-dir", str(tmp_path / "a"), "--no-http", "--config", str(config))
    with first:
        first.wait_for_line("smsroute running")
        second = smsroute("run", "--data-dir", str(tmp_path / "b"), "--no-http", "--config", str(config))
        line = assert_one_line_failure(second, "keys_dir_in_use")
        assert str(keys) in line and f"pid {first.proc.pid}" in line
        assert first.proc.poll() is None  # the first one is untouched
        first.proc.kill()  # SIGKILL: the OS drops the lock with the process
        first.proc.wait()
    with Running("run", "--data-dir", str(tmp_path / "b"), "--no-http", "--config", str(config)) as third:
        third.wait_for_line("smsroute running")
        assert third.stop() == 0
