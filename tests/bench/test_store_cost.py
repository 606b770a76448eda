"""The store-cost benchmark measures every stage on the real stores and reports per-message figures."""

from __future__ import annotations

import json

from bench import store_cost


def test_store_cost_reports_each_stage_per_message_for_each_batch_size(tmp_path, capsys):
    out = tmp_path / "cost.json"
    assert store_cost.main(["--messages", "40", "--batch", "1", "--batch", "20", "--repeats", "1",
                            "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["batch"] for r in rows] == [1, 20]
    for row in rows:
        assert row["accept_us"] > 0 and row["carrier_ack_us"] > 0 and row["debit_us"] > 0
        assert row["total_us"] == round(row["accept_us"] + row["carrier_ack_us"] + row["debit_us"], 2)
    assert "accept µs" in capsys.readouterr().out
