"""The secure e-mail intake: SMTP in, sealed exchange messages out (DESIGN.md section 7).

Pure core: ``config`` (the ``[intake]`` table), ``policy`` (who may send to
whom), ``smuggling`` (bare CR/LF), ``mime`` (multipart split on raw bytes),
``trust`` (a PGP verdict against the pinned staff), ``forms`` and
``content`` (what a mail carries, as canonical XML). Shells: ``pgp``
(python-gnupg, in a worker thread), ``server`` (aiosmtpd), ``submit`` (the
exchange edges), ``devkeys`` (what ``init`` creates).
"""
