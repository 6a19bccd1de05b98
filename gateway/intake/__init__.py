"""The secure e-mail intake: SMTP in, sealed exchange messages out (DESIGN.md section 7).

Pure parts: ``sender_policy`` (who may send to whom), ``smuggling`` (bare
CR/LF), ``mime`` (multipart split on raw bytes), ``trust`` (a PGP verdict
against the pinned staff), ``forms``, ``triage`` and ``content`` (what a
mail carries, as canonical XML), ``reply_tokens``. Shells: ``pgp``
(python-gnupg, in a worker thread), ``server`` (aiosmtpd), ``acceptance``
and ``inbox`` (the exchange edges), ``mailer`` (outbound secure mail),
``devkeys`` (what ``init`` creates). Its configuration, the ``[intake]``
table, is parsed by gateway/config/intake_config.py.
"""

__all__ = [
    "acceptance",
    "bounces",
    "content",
    "devkeys",
    "forms",
    "inbox",
    "mailer",
    "mime",
    "pgp",
    "refusal",
    "reminders",
    "replies",
    "reply_tokens",
    "sender_policy",
    "server",
    "service",
    "smuggling",
    "triage",
    "trust",
]
