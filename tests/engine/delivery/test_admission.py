"""Admission: a route's backlog against what its carriers take within the horizon."""

from __future__ import annotations

from engine.config import CarrierSettings, carrier_options
from engine.delivery.admission import Admission
from engine.delivery.carriers import CarrierBoard
from engine.routing import CarrierCandidate

CANDS = (CarrierCandidate("a"), CarrierCandidate("b"))


def admission(horizon: float = 2.0, **rates) -> Admission:
    board = CarrierBoard({n: CarrierSettings(n, "fra", "simulated",
                                             carrier_options("simulated", {"throughput": r}))
                          for n, r in rates.items()}, resp_timeout=3.0)
    return Admission(horizon, board)


def fill(adm: Admission, key: str = "a|b") -> int:
    """Admit until refused; the number admitted."""
    n = 0
    while adm.admit(key, CANDS, 0.0) and n < 10_000:
        adm.add(key)
        n += 1
    return n


def test_a_route_takes_its_carriers_pace_times_the_horizon():
    assert fill(admission(2.0, a=100, b=50)) == 300


def test_what_leaves_the_backlog_makes_room_again():
    adm = admission(1.0, a=6, b=4)
    assert fill(adm) == 10
    adm.remove("a|b")
    assert adm.admit("a|b", CANDS, 0.0)


def test_one_message_is_always_admitted_even_when_no_carrier_can_take_any():
    adm = admission(30.0, a=10, b=10)
    for name in ("a", "b"):
        adm.board.set_available(name, False, "suspended", 0.0)
    assert fill(adm) == 1


def test_a_limit_follows_the_carriers_after_a_refresh():
    adm = admission(1.0, a=10, b=10)
    assert fill(adm) == 20
    adm.board.set_available("a", False, "suspended", 0.0)
    adm.refresh()
    assert not adm.admit("a|b", CANDS, 0.0)  # 20 queued, room for 10 now


def test_a_horizon_of_zero_turns_admission_off():
    adm = admission(0.0, a=1, b=1)
    for name in ("a", "b"):
        adm.board.set_available(name, False, "suspended", 0.0)
    assert fill(adm) == 10_000
