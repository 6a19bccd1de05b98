"""Small IO helpers every shell shares: atomic files, the clock, key files, logs, locks, spools,
TLS contexts.

May import the core and the config.
"""

__all__ = [
    "atomic",
    "clock",
    "keyed_locks",
    "keystore",
    "logs",
    "spool",
    "tls",
]
