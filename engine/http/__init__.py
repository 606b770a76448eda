"""The HTTP face of the engine: the customer API (``/v1``) and the operator control port.

Both are aiohttp applications served by :class:`engine.http.server.HttpServers` on one uvloop loop in a
dedicated thread (``Engine.start(..., http=True)`` starts them). Modules, outermost first:

* ``server`` — the thread, the loop, the listeners, TLS, start/stop, first-start operator token.
* ``app_customer`` / ``app_control`` + ``control_accounts`` — routes and handlers.
* ``middleware`` — request log, metrics, security headers, API-key auth and GCRA rate limiting;
  ``errors`` — the one JSON error shape and engine error → HTTP status; ``jsonio`` — strict JSON bodies.
* ``notify`` (status changes → webhook events) and ``webhooks`` (signing, bounded dispatcher, retries).
* ``ratelimit`` (GCRA), ``tokens`` (operator tokens), ``idempotency``, ``requestlog`` and ``store``
  (the HTTP layer's own LMDB environment with group commit), ``metrics``, ``openapi``, ``context``.
"""
