"""The ``smsroute`` command line: ``segments`` prints the billable plan as exact JSON."""

from __future__ import annotations

import json

import pytest

from engine.cli import build_parser, main

# The public vectors of the SMS reference: text -> encoding, total units, units per segment.
VECTORS = [
    ("Hello world", "GSM-7", 11, [11]),
    ("a" * 160, "GSM-7", 160, [160]),
    ("a" * 161, "GSM-7", 161, [153, 8]),
    ("a" * 159 + "€", "GSM-7", 161, [153, 8]),
    ("Price: {10€}", "GSM-7", 15, [15]),
    ("\u201cHi\u201d", "UCS-2", 4, [4]),
    ("ж" * 71, "UCS-2", 71, [67, 4]),
    ("Hi \U0001F600", "UCS-2", 5, [5]),
    ("a" * 307, "GSM-7", 307, [153, 153, 1]),
]


@pytest.mark.parametrize("text,encoding,units,segments", VECTORS,
                         ids=[f"vector{i}" for i in range(len(VECTORS))])
def test_segments_prints_the_exact_json_of_each_reference_vector(capsys, text, encoding, units,
                                                                 segments):
    assert main(["segments", text]) == 0
    out = capsys.readouterr().out
    expected = f'{{"encoding": "{encoding}", "units": {units}, "segments": {json.dumps(segments)}}}\n'
    assert out == expected


def test_segments_of_an_empty_text_is_a_typed_error_with_exit_code_2(capsys):
    assert main(["segments", ""]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("smsroute: invalid_body:")


def test_the_parser_knows_run_segments_and_bench_and_requires_a_command():
    parser = build_parser()
    args = parser.parse_args(["run", "--data-dir", "/tmp/x", "--no-http"])
    assert args.command == "run" and args.data_dir == "/tmp/x" and args.no_http
    assert parser.parse_args(["segments", "hi"]).text == "hi"
    with pytest.raises(SystemExit):
        parser.parse_args([])


def test_edges_with_a_multi_host_role_are_refused_before_anything_starts(tmp_path, capsys):
    """``--role core`` moves the customer API behind edges that only a local cluster starts: refused,
    rather than a core whose public port nobody serves."""
    code = main(["run", "--data-dir", str(tmp_path / "data"), "--role", "core", "--workers", "1",
                 "--nats", "nats://127.0.0.1:1", "--edges", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "--edges" in err and "--role" in err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("option", ["--workers", "--edges", "--worker-index"])
def test_a_negative_process_count_is_refused_by_the_parser(option, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", option, "-1"])
    assert "not a count" in capsys.readouterr().err


def test_a_worker_run_by_hand_with_smsc_binds_its_carriers_to_that_smsc(tmp_path, monkeypatch):
    """``smsroute run --role worker --smsc H:P`` (a worker of a multi-host cluster) runs its carriers as
    SMPP binds to that SMSC, as ``--workers N --smsc`` does: it used to drop ``--smsc`` and run the
    simulated carriers, "delivering" (and billing) messages no SMSC ever saw."""
    from engine.cluster import worker
    from engine.config import load_settings

    seen: dict = {}

    def fake_worker_main(argv, overrides=None):
        args = worker.build_parser().parse_args(argv)
        seen["argv"] = argv
        seen["settings"] = load_settings(args.config, overrides)
        return 0

    monkeypatch.setattr(worker, "main", fake_worker_main)
    code = main(["run", "--role", "worker", "--workers", "2", "--worker-index", "1",
                 "--nats", "nats://127.0.0.1:1", "--data-dir", str(tmp_path / "w1"),
                 "--smsc", "127.0.0.1:2775", "--smsc-system-id", "acme"])
    assert code == 0
    carriers = seen["settings"].carriers
    assert carriers and all(c.kind == "smpp" for c in carriers.values())
    assert {(c.options.host, c.options.port, c.options.system_id)
            for c in carriers.values()} == {("127.0.0.1", 2775, "acme")}
    assert not any("secret" in a for a in seen["argv"])  # the bind's password is not put in an argv


def test_a_worker_index_outside_the_cluster_is_refused_before_anything_starts(tmp_path, capsys):
    """``--worker-index 2 --workers 2`` named a worker ``w2`` that holds no account's partition (and left
    worker 1's accounts unserved) without a word; it is refused, naming the valid range."""
    code = main(["run", "--role", "worker", "--workers", "2", "--worker-index", "2",
                 "--nats", "nats://127.0.0.1:1", "--data-dir", str(tmp_path / "w2")])
    err = capsys.readouterr().err
    assert code == 2 and "--worker-index 2" in err and "0..1" in err
    assert not (tmp_path / "w2").exists()


def test_edges_with_role_worker_are_refused_not_ignored(tmp_path, capsys):
    """``--role worker --edges 2`` started a worker and no edge, without a word: a worker of a multi-host
    cluster starts no HTTP edge (the edges are a local cluster's, ``--workers N --edges M``)."""
    code = main(["run", "--role", "worker", "--workers", "2", "--worker-index", "0", "--edges", "2",
                 "--nats", "nats://127.0.0.1:1", "--data-dir", str(tmp_path / "w0")])
    err = capsys.readouterr().err
    assert code == 2 and "--edges" in err and "--role worker" in err
    assert not (tmp_path / "w0").exists()


def test_the_smsc_password_can_come_from_a_file_instead_of_the_command_line(tmp_path, capsys):
    """A command line is readable by every local user (``ps``); ``--smsc-password-file`` keeps the SMPP
    password off it. Both at once, an empty or unreadable file are refused, naming the option."""
    from engine.cli import _settings_and_overrides

    secret = tmp_path / "smsc.password"
    secret.write_text("s3cret\n")
    args = build_parser().parse_args(["run", "--smsc", "127.0.0.1:2775",
                                      "--smsc-password-file", str(secret)])
    carriers = _settings_and_overrides(args)[0].carriers
    assert carriers and {c.options.password for c in carriers.values()} == {"s3cret"}

    with pytest.raises(SystemExit):  # one or the other
        build_parser().parse_args(["run", "--smsc", "127.0.0.1:2775", "--smsc-password", "x",
                                   "--smsc-password-file", str(secret)])
    assert "not allowed with argument" in capsys.readouterr().err
    (tmp_path / "empty").write_text("\n")
    for path in (tmp_path / "empty", tmp_path / "missing"):
        code = main(["run", "--data-dir", str(tmp_path / "d"), "--smsc", "127.0.0.1:2775",
                     "--smsc-password-file", str(path)])
        assert code == 2 and "--smsc-password-file" in capsys.readouterr().err


def test_smsroute_bench_takes_the_smsc_password_from_a_file_too(tmp_path, capsys):
    """The same ``ps`` exposure for the harness: ``smsroute bench --smsc ... --smsc-password-file FILE``
    (its --help offered only --smsc-password, and the file option was an unknown argument). A bad file
    is refused before any benchmark starts, naming the option."""
    from engine.cli import smsc_password

    secret = tmp_path / "smsc.password"
    secret.write_text("s3cret\n")
    args = build_parser().parse_args(["bench", "--smsc", "127.0.0.1:2775",
                                      "--smsc-password-file", str(secret)])
    assert smsc_password(args) == "s3cret"
    with pytest.raises(SystemExit):  # one or the other
        build_parser().parse_args(["bench", "--smsc-password", "x", "--smsc-password-file", str(secret)])
    assert "not allowed with argument" in capsys.readouterr().err
    code = main(["bench", "--smsc", "127.0.0.1:1", "--smsc-password-file", str(tmp_path / "missing"),
                 "--data-dir", str(tmp_path / "d"), "--no-progress"])
    assert code == 2 and "--smsc-password-file" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before the harness made anything


@pytest.mark.parametrize("given", [("--smsc-password", "x"), ("--smsc-system-id", "acme"),
                                   ("--smsc-password-file", "smsc.password")])
def test_smsc_bind_options_without_smsc_are_refused_not_ignored(tmp_path, given):
    """``smsroute run --smsc-password-file F`` without ``--smsc HOST:PORT`` started the embedded default's
    simulated carriers without a word, "delivering" (and billing) messages no SMSC ever saw."""
    from tests.engine.cli_support import smsroute

    (tmp_path / "smsc.password").write_text("s3cret\n")
    result = smsroute("run", "--data-dir", str(tmp_path / "d"), "--no-http", *given, cwd=tmp_path,
                      timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"smsroute: invalid_config: {given[0]} set the SMPP binds of --smsc")
    assert not (tmp_path / "d").exists()  # refused before anything started


@pytest.mark.parametrize("hostport", ["nohost", "smsc.example.com:", ":2775", "host:99999", "host:x1"])
def test_an_smsc_that_is_not_host_port_is_the_documented_one_line_failure(tmp_path, hostport):
    """It exited 1 with a bare "--smsc wants HOST:PORT" line, not ``smsroute: <code>: ...`` and 2."""
    from tests.engine.cli_support import smsroute

    result = smsroute("run", "--data-dir", str(tmp_path / "d"), "--no-http", "--smsc", hostport,
                      cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"smsroute: invalid_config: --smsc wants HOST:PORT (a port 1-65535), got {hostport!r}"]
    assert not (tmp_path / "d").exists()  # refused before anything started


def test_accept_fewer_workers_reaches_a_role_cores_placement_and_is_refused_without_role_core():
    from engine.cli import _cluster_for
    from engine.errors import ConfigError

    args = build_parser().parse_args(["run", "--role", "core", "--workers", "2", "--nats",
                                      "nats://127.0.0.1:4222", "--accept-fewer-workers"])
    assert _cluster_for(args, {})[1].accept_fewer_workers is True
    args = build_parser().parse_args(["run", "--role", "core", "--workers", "2", "--nats",
                                      "nats://127.0.0.1:4222"])
    assert _cluster_for(args, {})[1].accept_fewer_workers is False
    args = build_parser().parse_args(["run", "--workers", "2", "--accept-fewer-workers"])
    with pytest.raises(ConfigError, match="goes with --role core"):
        _cluster_for(args, {})
