"""ConnectionGate: the bounds per source address (IPv6 per /64) and in total, and the log budget."""

from __future__ import annotations

from engine.http.connections import LOG_PER_SECOND, ConnectionGate, ConnectionLimits


def test_an_ipv6_source_counts_per_64_and_a_mapped_ipv4_source_as_ipv4():
    key = ConnectionGate.address_key
    assert key(("2001:db8:1:2::1", 5, 0, 0)) == key(("2001:db8:1:2:ffff::9", 6, 0, 0))
    assert key(("2001:db8:1:2::1", 5, 0, 0)) != key(("2001:db8:1:3::1", 5, 0, 0))
    assert key(("::ffff:192.0.2.7", 5, 0, 0)) == key(("192.0.2.7", 9)) == "192.0.2.7"


def test_connections_are_admitted_up_to_each_bound_and_slots_come_back_on_release():
    gate = ConnectionGate(ConnectionLimits(max_total=3, max_per_address=2))
    assert [gate.admit("a"), gate.admit("a"), gate.admit("a")] == [True, True, False]
    assert gate.admit("b") and not gate.admit("c")  # the total bound
    gate.release("a")
    assert gate.admit("c") and gate.open == 3 and gate.counts["refused"] == 2


def test_lines_about_bad_input_are_limited_per_second():
    gate = ConnectionGate(ConnectionLimits())
    assert sum(gate.log_allowed() for _ in range(100)) == LOG_PER_SECOND
