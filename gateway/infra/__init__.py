"""Small IO helpers every shell shares: atomic files, the clock, key files, logs, locks, spools,
TLS contexts, SIGHUP.

May import the core and the config.
"""

__all__ = [
    "atomic",
    "clock",
    "hangup",
    "keyed_locks",
    "keystore",
    "logs",
    "spool",
    "tls",
]
