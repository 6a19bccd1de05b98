"""The demo area and the story `mash-gateway demo` plays on it."""

__all__ = [
    "area",
    "flow",
    "mail",
    "setup",
]
