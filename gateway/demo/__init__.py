"""The demo area and the story `mash-gateway demo` plays on it."""

__all__ = [
    "area",
    "console_side",
    "flow",
    "mail",
    "setup",
]
