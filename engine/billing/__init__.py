"""Billing on top of the ledger (``storage.ledger``): adjustments, low-balance notices, usage exports,
chain verification and reconciliation.

* ``service.py`` — :class:`Billing`, the engine's billing operations (``engine.billing``);
* ``usage.py`` — usage rows of an account and period, and their CSV / JSON encodings (streamed);
* ``reconcile.py`` — message records against the ledger, with the differences listed;
* ``offline.py`` — ``smsroute ledger verify`` / ``reconcile`` on a stopped engine's data directory.
"""
