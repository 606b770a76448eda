"""Child process for the exit tests: an embedding host that ends without calling ``engine.stop()``.

Usage: python -m tests.engine.exit_child DATA_DIR SMSC_PORT MODE OUT_FILE, MODE one of
``raise`` (the host raises), ``return`` (the script just ends) or ``with`` (raises inside
``with Engine.start(...) as engine:``). Before ending it writes ``<account id> <message id> <price>`` to
OUT_FILE once its one message is delivered.
"""

from __future__ import annotations

import sys
import threading

from engine import Engine
from engine.cli import smsc_overrides
from engine.config import load_settings

FAST_BINDS = {"reconnect_min_seconds": 0.05, "reconnect_max_seconds": 0.3}


def overrides(port: int) -> dict:
    doc = smsc_overrides(load_settings().raw, f"127.0.0.1:{port}", "smsroute", "secret")
    for table in doc["carriers"].values():
        table.update(FAST_BINDS)
    return doc


def use(engine: Engine, out_path: str) -> None:
    delivered = threading.Event()
    engine.on_status(lambda item: item.status == "delivered" and delivered.set())
    account = engine.create_account(email="exit@example.com")
    engine.register_sender(account.id, "EXIT")
    engine.deposit(account.id, usd="10", chain="test", tx_hash="0xexit", from_address="addr")
    accepted = engine.submit(account.api_key, to="+4915112345678", sender="EXIT", body="bye")
    if not delivered.wait(30):
        raise SystemExit("the message was not delivered")
    with open(out_path, "w") as out:
        out.write(f"{account.id} {accepted.message_id} {accepted.price_micro_usd}\n")


def main() -> None:
    data_dir, port, mode, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if mode == "with":
        with Engine.start(data_dir=data_dir, overrides=overrides(port)) as engine:
            use(engine, out_path)
            raise RuntimeError("the host failed inside the with block")
    engine = Engine.start(data_dir=data_dir, overrides=overrides(port))
    use(engine, out_path)
    if mode == "raise":
        raise RuntimeError("the host failed before engine.stop()")
    # mode "return": the script ends, engine.stop() never called


if __name__ == "__main__":
    main()
