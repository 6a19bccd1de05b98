"""The secure e-mail intake: SMTP in, sealed exchange messages out (DESIGN.md section 7).

Pure parts: ``sender_policy`` (who may send to whom), ``smuggling`` (bare
CR/LF), ``mime`` (multipart split on raw bytes), ``trust`` (a PGP verdict
against the pinned staff), ``partner_auth`` (a `tls` domain's DKIM and
client-certificate verdicts), ``replay`` (what a mail is remembered by),
``forms``, ``triage`` and ``content`` (what a mail carries, as canonical
XML), ``reply_tokens``. Shells: ``pgp`` (python-gnupg, in a worker thread),
``dkim_check`` (dkimpy, likewise), ``replay_memory`` (its SQLite file),
``server`` (aiosmtpd), ``acceptance`` and ``inbox`` (the exchange edges),
``mailer`` (outbound secure mail), ``devkeys`` (what ``init`` creates).
Its configuration, the ``[intake]`` table, is parsed by
gateway/config/intake_config.py.
"""

__all__ = [
    "acceptance",
    "bounces",
    "content",
    "devkeys",
    "dkim_check",
    "forms",
    "inbox",
    "mailer",
    "mime",
    "partner_auth",
    "pgp",
    "refusal",
    "reminders",
    "replay",
    "replay_memory",
    "replies",
    "reply_tokens",
    "sender_policy",
    "server",
    "service",
    "smuggling",
    "triage",
    "trust",
]
