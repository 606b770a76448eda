"""``bench.http_load``, ``bench.http_cost`` and ``bench.overload`` open as many accounts as ``smsroute
bench`` would for the same engine (``bench.cli.accounts_of``: one per engine process), so their figures
compare with its. Before, they defaulted to 8 accounts whatever the engine."""

from __future__ import annotations

import pytest

from bench import http_cost, http_load, overload


@pytest.mark.parametrize("argv,accounts", [
    ([], 1),  # `smsroute run`: one process
    (["--run-args", "--workers 2 --edges 2"], 2),  # one account on each worker
    (["--run-args=--workers=3"], 3),
    (["--run-args", "--edges 2"], 1),
    (["--target", "stub", "--run-args", "--workers 2"], 1),  # run-args only go to `smsroute run`
    (["--accounts", "5", "--run-args", "--workers 2"], 5),  # as asked
])
def test_http_load_opens_one_account_per_engine_process_by_default(argv, accounts):
    assert http_load.parse_args(argv).accounts == accounts


@pytest.mark.parametrize("bench", [http_cost, overload], ids=["http_cost", "overload"])
def test_the_one_process_benches_open_one_account_by_default(bench):
    assert bench.parse_args([]).accounts == 1
    assert bench.parse_args(["--accounts", "4"]).accounts == 4


@pytest.mark.parametrize("bench", [http_load, http_cost, overload],
                         ids=["http_load", "http_cost", "overload"])
def test_zero_accounts_is_refused(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--accounts", "0"])
