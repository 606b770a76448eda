"""Delivery receipts that arrive while the disk is full are not lost: refused with a temporary error, the
simulated SMSC delivers them again, and once space is freed every message ends ``delivered`` - after a
restart too -, sent once and billed once.

Before, the bind answered every ``deliver_sm`` 0 as it read it; a receipt whose commit then failed for lack
of space was forgotten by the SMSC, and its message ended ``expired`` once the engine was restarted.

Runs in a private mount namespace on a 4 MiB tmpfs (needs root and ``unshare``, as the other disk-full
tests). The disk is filled while another process holds a read transaction on the POP store (as a backup
with ``mdb_copy`` does): LMDB cannot then reuse the pages it frees, so even a status update needs pages the
full disk cannot give - the state in which receipts could not be stored.
"""

from __future__ import annotations

import pytest

from tests.engine.disk_full_support import needs_tiny_tmpfs, run_on_tiny_tmpfs

pytestmark = pytest.mark.functional

PIN = r"""
import sys, lmdb
env = lmdb.open(sys.argv[1], readonly=True, max_dbs=512, subdir=True)
txn = env.begin()  # a snapshot the writer must keep: it cannot reuse the pages it frees meanwhile
print("pinned", flush=True)
sys.stdin.read()
"""

COMMON = r"""
import http.client, json, os, subprocess, sys
from bench.smsc import SmscConfig, SmscThread
from engine import Engine
from engine.smpp import smsc_carrier_settings
from tests.waiting import wait_for

mnt, data = sys.argv[1], sys.argv[1] + "/data"
smsc = SmscThread(SmscConfig(seed=5, receipt_delay=RECEIPT_DELAY, latency=LATENCY,
                             receipt_retry_seconds=(0.3, 0.6))).start()


def config():
    carrier = smsc_carrier_settings("127.0.0.1", smsc.port, reconnect_min_seconds=0.05,
                                    reconnect_max_seconds=0.2, window=WINDOW)
    return {"pops": {"fra": {"city": "Frankfurt"}},
            "carriers": {"fra-smsc": {"pop": "fra", "kind": "smpp", **carrier}},
            "routes": [{"match": ["DE"], "pop": "fra", "carriers": [{"carrier": "fra-smsc"}]}],
            "rates": {"default": 50000},
            "engine": {"default_validity_seconds": 60, "tick_ms": 50},
            "http": {"customer_port": 0, "control_port": 0}}


def pin_pages():
    pin = subprocess.Popen([sys.executable, "-c", os.environ["PIN"], data + "/pops/_shared"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert pin.stdout.readline().strip() == "pinned"
    return pin


def fill_disk():
    for n, size in enumerate(("64k", "4k")):  # to the last page
        subprocess.run(["dd", "if=/dev/zero", f"of={mnt}/fill{n}", f"bs={size}"],
                       stderr=subprocess.DEVNULL)


def free_disk(pin):
    for n in range(2):
        os.remove(f"{mnt}/fill{n}")
    pin.stdin.close()
    pin.wait(10)


engine = Engine.start(data_dir=data, overrides=config(), http=True)
pin = pin_pages()
acct = engine.create_account(email="full@example.com")
engine.register_sender(acct.id, "ACME")
engine.deposit(acct.id, usd="100", chain="tron", tx_hash="0xfull", from_address="T")
acked = set()
engine.on_carrier_ack(lambda mid, _at: acked.add(mid))
ids = [engine.submit(acct.api_key, "+4915112345678", "ACME", f"hello {i}").message_id
       for i in range(10)]


def statuses(e):
    out = {}
    for mid in ids:
        s = e.status(mid).status
        out[s] = out.get(s, 0) + 1
    return out


def readyz(e):
    conn = http.client.HTTPConnection("127.0.0.1", e.http.control_port, timeout=10)
    try:
        conn.request("GET", "/readyz")
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        conn.close()


def smsc_counter(name):
    return smsc.call(lambda: smsc.smsc.counters[name])


def finish(e, during):
    # wait for every message to be delivered and the engine ready, reconcile, stop, print what was seen
    wait_for(lambda: statuses(e) == {"delivered": 10}, "every message delivered")
    final = statuses(e)
    wait_for(lambda: readyz(e)[0] == 200, "ready again")
    report = e.billing.reconcile(settle_seconds=0)
    e.stop()
    sent = smsc.call(lambda: len(smsc.smsc.parts))
    smsc.stop()
    print(json.dumps({**during, "final": final,
                      "differences": report.differences_total, "parts_sent": sent,
                      "retried": smsc.smsc.counters["receipts_retried"]}))
"""

RESTARTED = COMMON + r"""
wait_for(lambda: acked >= set(ids), "every carrier acknowledgement committed")
fill_disk()
wait_for(lambda: smsc_counter("receipts_retried") >= 10, "ten receipts refused")
during = {"during": statuses(engine), "readyz_during": readyz(engine)}
engine.stop(drain_seconds=0)  # the operator restarts the engine, its disk still full
free_disk(pin)
finish(Engine.start(data_dir=data, overrides=config(), http=True), during)
"""

ACKED_DURING = COMMON + r"""
fill_disk()  # at once: the carrier's acknowledgements come while the disk is full
wait_for(lambda: smsc_counter("receipts_retried") >= 10, "ten receipts refused")
during = {"during": statuses(engine), "readyz_during": readyz(engine)}
free_disk(pin)  # no new message comes: readiness returns by the POP's probe write
finish(engine, during)
"""

HELD = COMMON + r"""
# a window of one: one attempt on the wire, the other messages wait in the POP for the carrier's slot
fill_disk()


def fra():
    return next(p for p in engine.stats()["pops"] if p["pop"] == "fra")


def parts_sent():
    return smsc.call(lambda: len(smsc.smsc.parts))


# until every message went out (as before), or the POP holds the others and nothing is on the wire
wait_for(lambda: parts_sent() == 10 or (fra().get("attempts_held", 0) > 0
                                         and not any(fra()["outstanding"].values())),
         "every message sent or the rest held")
during = {"sent_during": parts_sent(), "held": fra().get("attempts_held", 0),
          "readyz_during": readyz(engine)}
engine.stop(drain_seconds=0)  # the operator restarts the engine, its disk still full
free_disk(pin)
finish(Engine.start(data_dir=data, overrides=config(), http=True), during)
"""

def _run(tmp_path, child: str, window: int = 10) -> tuple[dict, str]:
    return run_on_tiny_tmpfs(tmp_path / "mnt", child.replace("WINDOW", str(window)), env={"PIN": PIN},
                             timeout=60)



@needs_tiny_tmpfs
def test_receipts_refused_while_the_disk_is_full_are_delivered_again_and_matched_after_a_restart(
        tmp_path):
    seen, _ = _run(tmp_path, RESTARTED.replace("RECEIPT_DELAY", "(0.8, 0.8)")
                   .replace("LATENCY", "(0.0, 0.0)"))
    assert seen["during"] == {"accepted": 10}  # nothing stored, nothing acknowledged to the SMSC
    assert seen["readyz_during"][0] == 503
    assert seen["retried"] >= 10  # each refused (0x64) and delivered again
    assert seen["final"] == {"delivered": 10}  # before: expired, the receipts lost
    assert seen["parts_sent"] == 10 and seen["differences"] == 0  # sent once, billed once


@needs_tiny_tmpfs
def test_a_message_acknowledged_by_its_carrier_while_the_disk_is_full_still_gets_its_receipt_and_readyz_is_503_meanwhile(
        tmp_path):
    """Its carrier id cannot be stored yet; the receipt matches it in memory, is refused until the
    final status is durable, and is matched again when the SMSC delivers it after space is freed.
    Meanwhile ``/readyz`` says 503 ``store_full`` (before: 200, and a load balancer kept sending traffic
    the instance could only refuse), and 200 again once the POP's probe write succeeds - no new message
    has to come for that. One ALARM for the outage, not one per retried commit."""
    seen, err = _run(tmp_path, ACKED_DURING.replace("RECEIPT_DELAY", "(0.8, 0.8)")
                     .replace("LATENCY", "(0.3, 0.3)"))
    assert seen["during"] == {"accepted": 10}
    assert seen["retried"] >= 10
    assert seen["final"] == {"delivered": 10}
    assert seen["parts_sent"] == 10 and seen["differences"] == 0
    status, body = seen["readyz_during"]
    assert status == 503 and body["error"]["code"] == "store_full"
    assert "message:fra" in body["error"]["message"]
    assert err.count("ALARM store message is full") == 1 and "ALARM store write failed" not in err
    assert "store message takes new messages again" in err  # and ready (finish waited for the 200)


@needs_tiny_tmpfs
def test_no_carrier_attempt_starts_while_status_changes_cannot_be_written_so_a_restart_sends_no_duplicates(
        tmp_path):
    """A carrier's acknowledgement (its message id) that cannot be stored is lost if the engine stops
    before space returns, and the message is sent again after the restart: a second SMS to the handset.
    So while its commits fail the POP starts no new attempt: the messages waiting for the carrier's
    window are held (``attempts_held``), and only what was already on the wire - here one attempt, and the
    one handed over before the first failed commit was seen - can be acknowledged unstored. Before, the
    POP kept sending through the outage; each of those messages was sent twice."""
    seen, err = _run(tmp_path, HELD.replace("RECEIPT_DELAY", "(0.3, 0.3)")
                     .replace("LATENCY", "(0.3, 0.3)"), window=1)
    assert seen["held"] >= 7 and seen["sent_during"] <= 3, seen  # before: all 10 sent, none held
    assert seen["final"] == {"delivered": 10}
    assert seen["parts_sent"] <= 12, seen  # before: 20, every message sent twice
    assert seen["differences"] == 0  # billed once each
    assert err.count("carrier attempts held") == 1, err[-3000:]
