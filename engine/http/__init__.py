"""The HTTP face of the engine: the customer API (``/v1``) and the operator control port.

Both are aiohttp applications served by :class:`engine.http.server.HttpServers` on one uvloop loop in a
dedicated thread (``Engine.start(..., http=True)`` starts them). Modules, outermost first:

* ``server`` — the thread, the loop, the listeners, TLS, start/stop, first-start operator token;
  ``shedding`` — the customer port's door (503 before routing and body); ``memory`` — after a burst.
* ``app_customer`` + ``customer_messages`` / ``app_control`` + ``control_accounts`` — routes and
  handlers; ``schemas`` — the customer API's msgspec request/response types (the OpenAPI source),
  ``customer_schemas`` its threshold and privacy request bodies; ``control_schemas`` — the control
  port's request bodies, the same way. Every request body of both APIs is decoded by one of these types.
* ``middleware`` — request log, metrics, security headers, API-key auth and GCRA rate limiting (one
  ``customer_middleware`` for the customer app); ``errors`` — the one JSON error shape and engine error →
  HTTP status; ``jsonio`` — reading a JSON body's bytes (content type, size, timeout; the types
  validate it) and writing JSON answers.
* ``webhook_feed`` (the engine's durable webhook outbox → deliveries, in order, batched, acknowledged),
  ``webhooks`` (signing, bounded dispatcher, retries), ``notify`` (status changes → metrics; where an
  event goes).
* ``ratelimit`` (GCRA), ``tokens`` (operator tokens), ``idempotency``, ``requestlog`` and ``store``
  (the HTTP layer's own LMDB environment with group commit), ``metrics``, ``openapi``, ``context``.
"""
