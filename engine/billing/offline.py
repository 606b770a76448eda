"""``smsroute ledger verify`` and ``smsroute ledger reconcile``: the ledger of a stopped engine.

They open the data directory the way the engine does (its lock, its key provider from the config — so a
PKCS#11 KEK works the same), start no actor and write nothing. The data directory of a cluster's core holds
the ledger but no POP store (the workers' directories do): there ``reconcile`` runs the ledger's own checks
only, and says so. A running engine holds the directory's
lock: use its control port instead (``GET /v1/ledger/verify``, ``GET /v1/ledger/reconciliation``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.cluster.placement import Placement
from engine.errors import DataDirInUse, DataDirUnusable


@contextmanager
def stopped_engine(data_dir: str | Path, settings: Any) -> Iterator[Any]:
    """The stores of ``data_dir`` (a ``Runtime`` with no actor), closed and unlocked afterwards."""
    from actors.supervisor import Runtime

    data_dir = Path(data_dir)
    if not (data_dir / "core").is_dir():
        raise DataDirUnusable(f"{data_dir} holds no smsroute data (no core/ store): is --data-dir right? "
                              "(in a cluster, the core's)")
    # a cluster core's directory holds no POP store (the workers' hold them): open none, create none
    runtime = Runtime(data_dir, settings, bridge=None, ids=None,
                      placement=Placement(runs_pops=(data_dir / "pops").is_dir()))
    try:
        runtime.open_stores()
    except DataDirInUse as exc:
        raise DataDirInUse(f"{exc.message}; while it runs, ask its control port "
                           "(GET /v1/ledger/verify, GET /v1/ledger/reconciliation)") from None
    try:
        yield runtime
    finally:
        runtime.stop()
        runtime.release()


def verify(data_dir: str | Path, settings: Any) -> int:
    """Print the chain report as JSON; exit status 0 when intact, 1 when broken."""
    with stopped_engine(data_dir, settings) as runtime:
        report = runtime.ledger_store.verify()
    _print(report.as_dict())
    if not report.ok:
        print(f"smsroute: ledger chain broken: {len(report.problems)} problem(s), the first at entry "
              f"{report.first_broken}", file=sys.stderr)
    return 0 if report.ok else 1


def reconcile(data_dir: str | Path, settings: Any) -> int:
    """Print the reconciliation as JSON; exit status 0 without differences, 1 with."""
    from engine.billing.reconcile import reconcile as run

    with stopped_engine(data_dir, settings) as runtime:
        shards = runtime.shards if runtime.placement.runs_pops else None
        report = run(runtime.ledger_store, shards)
    _print(report.as_dict())
    if not report.records_checked:
        print("smsroute: no POP store in this directory (a cluster's core): only the ledger's own "
              "checks ran; reconcile a running cluster with GET /v1/ledger/reconciliation",
              file=sys.stderr)
    if not report.ok:
        print(f"smsroute: ledger reconciliation found {report.differences_total} difference(s) (a "
              "debit or refund a crash left unwritten is written at the next start)", file=sys.stderr)
    return 0 if report.ok else 1


def _print(doc: dict) -> None:
    print(json.dumps(doc, indent=2), flush=True)
