"""What an answer says about the mail it caused: handed to the mail server's queue, or not delivered.

Why: a route that mails something (a confirmation link, a verification link) used to answer
``{"sent": true}`` whatever became of the mail, also when no mail server is configured (``[email]`` has
no ``host``) and the mail is only logged. The answer now says which: ``sent`` true with ``delivery``
``"queued"`` when a mail server is configured (the mail is in the durable outbox and the mail worker
hands it to the server, retrying; the answer does not wait for the server), and ``sent`` false with
``delivery`` ``"not_delivered"`` and a message when there is none (the same word as the outbox's receipt,
``storage.outbox.NOT_DELIVERED``, and a lawful order's notice state).
"""

from __future__ import annotations

from storage.outbox import NOT_DELIVERED, QUEUED

__all__ = ["NOT_CONFIGURED_MESSAGE", "delivery"]

NOT_CONFIGURED_MESSAGE = ("no mail server is configured ([email] host): the mail was only logged, "
                          "nobody received it")


def delivery(delivers: bool) -> dict[str, bool | str]:
    """``{"sent", "delivery"[, "message"]}`` for a mail just queued (``delivers``: whether a mail
    server is configured, ``MailService.delivers``)."""
    if delivers:
        return {"sent": True, "delivery": QUEUED}
    return {"sent": False, "delivery": NOT_DELIVERED, "message": NOT_CONFIGURED_MESSAGE}
