"""Per-agency adapters: transports and mappings between agency case systems and the exchange."""
