"""MASH gateway: signed, encrypted, schema-checked messages between safeguarding partners."""

__version__ = "0.1.0"
