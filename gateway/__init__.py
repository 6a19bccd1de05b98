"""MASH gateway: signed, encrypted, schema-checked messages between safeguarding partners.

One folder per layer; README.md ("Where things are") says what each may import.
"""

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "broker",
    "cli",
    "config",
    "core",
    "demo",
    "infra",
    "intake",
    "services",
    "store",
    "views",
]
