"""Per-agency adapters: transports and mappings between agency case systems and the exchange."""

__all__ = [
    "framework",
    "http_tokens",
    "inbound",
    "ledger",
    "mapping",
    "prepare",
    "profile",
    "transports",
]
