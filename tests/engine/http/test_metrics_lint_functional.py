"""A live ``/metrics`` scrape follows Prometheus conventions (promtool's rules, see ``promlint``).

The engine runs with both HTTP servers; messages go through ``POST /v1/messages`` to a corridor of
each POP and reach a final status, so every family has samples; then the control port is scraped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.config import load_settings
from engine.status import FINAL
from tests.engine.http.conftest import Client, funded_account, start_engine
from tests.engine.http.promlint import lint
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

CORRIDORS = {"+4915112345678": ("fra", "DE"), "+6591234567": ("sin", "SG"),
             "+5511987654321": ("gru", "BR")}


@pytest.fixture(scope="module")
def scrape(tmp_path_factory):
    engine = start_engine(tmp_path_factory.mktemp("metrics"))
    try:
        account = funded_account(engine, "metrics@example.com")
        customer = Client(engine.http.customer_port, account.api_key)
        ids = []
        for to in CORRIDORS:
            status, _, answer = customer.request("POST", "/v1/messages",
                                                 {"to": to, "from": "ACME", "body": "hello"})
            assert status == 202
            ids.append(answer["id"])
        wait_for(lambda: all(engine.status(i).status in FINAL for i in ids), "final statuses", 45)
        token = (engine.data_dir / "operator.token").read_text().strip()
        status, _, body = Client(engine.http.control_port, token).request("GET", "/metrics")
        assert status == 200
        yield body.decode()
    finally:
        engine.stop()


def test_a_live_scrape_passes_promtools_metric_rules(scrape):
    assert lint(scrape) == []


def test_no_metric_name_holds_a_pop_carrier_or_store_name(scrape):
    settings = load_settings()
    entities = {*settings.pops, *(c.replace("-", "_") for c in settings.carriers),
                "records", "bodies", "holds", "audit", "ledger", "accounts", "idempotency",
                "request_log"}
    names = set(re.findall(r"^# TYPE (\S+) ", scrape, re.M))
    assert {"smsroute_messages_total", "smsroute_pop_in_flight", "smsroute_carrier_available",
            "smsroute_retention_removed_total"} <= names
    for name in names:
        for entity in entities:
            assert not re.search(rf"(^|_){entity}(_|$)", name), f"{name} holds {entity!r}"


def _series(scrape: str, name: str) -> list[dict[str, str]]:
    return [dict(re.findall(r'(\w+)="([^"]*)"', labels))
            for labels in re.findall(rf"^{name}\{{([^}}]*)\}}", scrape, re.M)]


@pytest.mark.parametrize("histogram", ["smsroute_submit_latency_seconds",
                                       "smsroute_delivery_latency_seconds"])
def test_latency_histograms_are_per_corridor_labelled_pop_and_country(scrape, histogram):
    corridors = {(s["pop"], s["country"]) for s in _series(scrape, f"{histogram}_count")}
    assert all(set(s) == {"pop", "country"} for s in _series(scrape, f"{histogram}_count"))
    assert corridors == set(CORRIDORS.values())


def test_counters_are_counters_and_entities_are_labels(scrape):
    assert "# TYPE smsroute_pop_retries_total counter" in scrape
    assert "# TYPE smsroute_carrier_submitted_total counter" in scrape
    pops = {s["pop"] for s in _series(scrape, "smsroute_pop_in_flight")}
    assert pops == {"fra", "sin", "gru"}
    carriers = {s["carrier"] for s in _series(scrape, "smsroute_carrier_available")}
    assert carriers == set(load_settings().carriers)


def test_each_pop_says_it_answered_the_scrape(scrape):
    answered = dict(re.findall(r'^smsroute_pop_stats_answered\{pop="(\w+)"\} (\S+)$', scrape, re.M))
    assert answered == {"fra": "1.0", "sin": "1.0", "gru": "1.0"}


def test_each_carrier_and_the_sweeper_say_they_answered_the_scrape(scrape):
    answered = {(s["carrier"], s["pop"]) for s in _series(scrape, "smsroute_carrier_stats_answered")}
    settings = load_settings()
    assert answered == {(name, c.pop) for name, c in settings.carriers.items()}
    assert not re.search(r"^smsroute_carrier_stats_answered\{.*\} 0\.0$", scrape, re.M)
    assert re.search(r"^smsroute_retention_stats_answered 1\.0$", scrape, re.M)


def test_each_pop_counts_the_group_commits_it_wrote(scrape):
    commits = {pop: float(n) for pop, n in
               re.findall(r'^smsroute_pop_commits_total\{pop="(\w+)"\} (\S+)$', scrape, re.M)}
    assert set(commits) == {"fra", "sin", "gru"}
    used = {pop for pop, _country in CORRIDORS.values()}
    assert all(commits[pop] >= 1 for pop in used)  # every message was committed before its answer


def test_the_linter_reports_what_the_old_exposition_did_wrong():
    old = ("# HELP smsroute_engine_pops_accepted engine.stats() pops_accepted\n"
           "# TYPE smsroute_engine_pops_accepted counter\n"
           'smsroute_engine_pops_accepted_total{key="fra"} 3.0\n'
           "# HELP smsroute_http_sweep_audit:control_removed x\n"
           "# TYPE smsroute_http_sweep_audit:control_removed gauge\n"
           "smsroute_http_sweep_audit:control_removed 1.0\n"
           "# HELP smsroute_latency_ms x\n# TYPE smsroute_latency_ms gauge\nsmsroute_latency_ms 1\n")
    problems = "\n".join(lint(old))
    assert "smsroute_engine_pops_accepted: counter metrics should have a '_total' suffix" in problems
    assert "smsroute_http_sweep_audit:control_removed: metric names should not contain ':'" in problems
    assert "smsroute_latency_ms: metric name should not contain abbreviated units" in problems


README = Path(__file__).resolve().parents[3] / "README.md"
# Exported only by the core of a cluster (``--workers``), where the NATS link exists; a one-process
# engine has no such link. The cluster tests scrape them there.
CLUSTER_ONLY = {"smsroute_nats_connected", "smsroute_nats_frames_total",
                "smsroute_nats_refused_total", "smsroute_nats_reconnects_total",
                "smsroute_nats_queries_not_acted_on_total",
                "smsroute_nats_backlog_bytes", "smsroute_nats_dropped_total",
                "smsroute_worker_nats_answered", "smsroute_worker_stats_answered",
                "smsroute_worker_retention_sweeps_total",
                "smsroute_worker_retention_sweep_failures_total",
                "smsroute_worker_retention_removed_total", "smsroute_edge_query_timeouts_total"}


def _readme_metric_names() -> set[str]:
    """Every full metric name the README tells operators to scrape or alert on: all of them except the
    left column of the migration table (the names that are gone)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("**Migration from the earlier names**")
    end = text.index("\n## ", start)
    migration = text[start:end]
    now_column = "\n".join(row.split("|")[2] for row in migration.splitlines()
                           if row.startswith("| ") and row.count("|") >= 3)
    kept = text[:start] + now_column + text[end:]
    return set(re.findall(r"\bsmsroute_[a-z0-9_]*[a-z0-9]\b", kept)) - {"smsroute_engine"}


def test_every_metric_the_readme_names_is_exported(scrape):
    """An operator copies names from the README into alerts and dashboards: a name the engine does not
    export is an alert that never fires (the control port's section named the pre-rename
    ``smsroute_engine_actors_alive`` / ``smsroute_engine_dead_actors``)."""
    exported = set(re.findall(r"^# TYPE (\S+) ", scrape, re.M))
    named = _readme_metric_names()
    assert {"smsroute_actor_alive", "smsroute_dead_actors", "smsroute_messages_total"} <= named
    edges = {n for n in named if n.startswith("smsroute_edge_")}  # test_edge_metrics_functional's
    assert sorted(named - CLUSTER_ONLY - edges - exported) == []
