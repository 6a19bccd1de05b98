"""The tracking store's schema, as numbered migrations applied in order at open.

A released migration is never edited: a change is a new, higher version.
Each migration is a tuple of single statements so it can run, with its
``schema_migrations`` row, inside one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TEXT NOT NULL
)"""

STATES = "('submitted', 'routed', 'delivered', 'answered', 'rejected')"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "messages, recipients, transitions, claims, handled",
        (
            f"""CREATE TABLE messages (
                message_id     TEXT PRIMARY KEY,
                correlation_id TEXT NOT NULL,
                in_reply_to    TEXT,
                message_type   TEXT NOT NULL,
                sender         TEXT NOT NULL,
                rag            TEXT,
                deadline       TEXT,
                created_at     TEXT NOT NULL,
                state          TEXT NOT NULL CHECK (state IN {STATES}),
                updated_at     TEXT NOT NULL
            )""",
            "CREATE INDEX messages_by_correlation ON messages (correlation_id, created_at)",
            "CREATE INDEX messages_by_reply ON messages (in_reply_to)",
            "CREATE INDEX messages_by_state ON messages (state, deadline)",
            """CREATE TABLE message_recipients (
                message_id TEXT NOT NULL REFERENCES messages (message_id) ON DELETE CASCADE,
                position   INTEGER NOT NULL,
                agency     TEXT NOT NULL,
                PRIMARY KEY (message_id, agency)
            )""",
            f"""CREATE TABLE transitions (
                seq        INTEGER PRIMARY KEY AUTOINCREMENT,
                message_id TEXT NOT NULL REFERENCES messages (message_id) ON DELETE CASCADE,
                state      TEXT NOT NULL CHECK (state IN {STATES}),
                at         TEXT NOT NULL,
                reason     TEXT,
                detail     TEXT,
                CHECK (state <> 'rejected' OR reason IS NOT NULL)
            )""",
            "CREATE INDEX transitions_by_message ON transitions (message_id, seq)",
            """CREATE TABLE claims (
                message_id    TEXT PRIMARY KEY,
                header_digest TEXT NOT NULL
            )""",
            """CREATE TABLE handled (
                agency     TEXT NOT NULL,
                message_id TEXT NOT NULL,
                PRIMARY KEY (agency, message_id)
            )""",
        ),
    ),
)
