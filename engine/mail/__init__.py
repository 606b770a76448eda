"""Customer e-mail: templates, the durable outbox's sender, and the notices the engine sends.

:class:`engine.mail.service.MailService` opens ``<data_dir>/mail`` (the sealed outbox) and starts the
:class:`~engine.mail.worker.MailWorker`; :class:`~engine.mail.notices.Notices` is what the rest of the
engine calls (``engine.notices.security_alert(account_id, kind)`` and friends).
"""
