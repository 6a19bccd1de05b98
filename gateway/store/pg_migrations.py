"""The PostgreSQL tracking store's schema: the same tables and versions as SQLite's, in its dialect.

Versions match gateway.store.migrations one for one, so ``schema_version``
means the same on both stores. Timestamps are ``timestamptz``; sequences
are identity columns. A released migration is never edited.
"""

from __future__ import annotations

from gateway.store.migrations import DEADLINE_EVENTS, STATES, Migration

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL
)"""

# Taken for the migration transaction, so routers starting together migrate once.
MIGRATION_LOCK_KEY = 0x6D617368  # "mash"

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
                deadline       TIMESTAMPTZ,
                created_at     TIMESTAMPTZ NOT NULL,
                state          TEXT NOT NULL CHECK (state IN {STATES}),
                updated_at     TIMESTAMPTZ NOT NULL
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
                seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                message_id TEXT NOT NULL REFERENCES messages (message_id) ON DELETE CASCADE,
                state      TEXT NOT NULL CHECK (state IN {STATES}),
                at         TIMESTAMPTZ NOT NULL,
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
    Migration(
        2,
        "deadlines and their events",
        (
            """CREATE TABLE deadlines (
                deadline_id    TEXT PRIMARY KEY,
                message_id     TEXT NOT NULL REFERENCES messages (message_id) ON DELETE CASCADE,
                correlation_id TEXT NOT NULL,
                kind           TEXT NOT NULL CHECK (kind IN ('delivery', 'response', 'decision')),
                debtor         TEXT NOT NULL,
                creditor       TEXT NOT NULL,
                rag            TEXT,
                started_at     TIMESTAMPTZ NOT NULL,
                due_at         TIMESTAMPTZ NOT NULL,
                next_at        TIMESTAMPTZ,
                level          INTEGER NOT NULL DEFAULT 0,
                closed_at      TIMESTAMPTZ,
                closed_by      TEXT,
                breached       BOOLEAN NOT NULL DEFAULT FALSE
            )""",
            "CREATE INDEX deadlines_to_fire ON deadlines (next_at) WHERE next_at IS NOT NULL",
            "CREATE INDEX deadlines_by_message ON deadlines (message_id)",
            "CREATE INDEX deadlines_by_case ON deadlines (correlation_id)",
            f"""CREATE TABLE deadline_events (
                seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                deadline_id TEXT NOT NULL REFERENCES deadlines (deadline_id) ON DELETE CASCADE,
                at          TIMESTAMPTZ NOT NULL,
                event       TEXT NOT NULL CHECK (event IN {DEADLINE_EVENTS}),
                level       INTEGER,
                message_id  TEXT,
                reason      TEXT
            )""",
            "CREATE INDEX deadline_events_by_deadline ON deadline_events (deadline_id, seq)",
            "CREATE UNIQUE INDEX one_escalation_per_level ON deadline_events (deadline_id, level)"
            " WHERE event = 'escalated'",
        ),
    ),
)
