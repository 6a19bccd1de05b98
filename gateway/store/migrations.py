"""The tracking store's schema, as numbered migrations applied in order at open.

One schema for both stores: the statements are written once, with the few
column types that differ between SQLite and PostgreSQL left as
``{fragment}``s that each ``Dialect`` fills in, so the two stores cannot
drift apart and a schema version means the same on both.

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


STATES = "('submitted', 'routed', 'delivered', 'answered', 'rejected')"
DEADLINE_EVENTS = "('rerated', 'escalated', 'met', 'met-late', 'ended')"

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  {instant} NOT NULL
)"""

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
                deadline       {{instant}},
                created_at     {{instant}} NOT NULL,
                state          TEXT NOT NULL CHECK (state IN {STATES}),
                updated_at     {{instant}} NOT NULL
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
                seq        {{sequence_key}},
                message_id TEXT NOT NULL REFERENCES messages (message_id) ON DELETE CASCADE,
                state      TEXT NOT NULL CHECK (state IN {STATES}),
                at         {{instant}} NOT NULL,
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
                started_at     {instant} NOT NULL,
                due_at         {instant} NOT NULL,
                next_at        {instant},
                level          INTEGER NOT NULL DEFAULT 0,
                closed_at      {instant},
                closed_by      TEXT,
                breached       {flag}
            )""",
            "CREATE INDEX deadlines_to_fire ON deadlines (next_at) WHERE next_at IS NOT NULL",
            "CREATE INDEX deadlines_by_message ON deadlines (message_id)",
            "CREATE INDEX deadlines_by_case ON deadlines (correlation_id)",
            f"""CREATE TABLE deadline_events (
                seq         {{sequence_key}},
                deadline_id TEXT NOT NULL REFERENCES deadlines (deadline_id) ON DELETE CASCADE,
                at          {{instant}} NOT NULL,
                event       TEXT NOT NULL CHECK (event IN {DEADLINE_EVENTS}),
                level       INTEGER,
                message_id  TEXT,
                reason      TEXT
            )""",
            "CREATE INDEX deadline_events_by_deadline ON deadline_events (deadline_id, seq)",
            # The store's own guard that an escalation level is recorded once.
            "CREATE UNIQUE INDEX one_escalation_per_level ON deadline_events (deadline_id, level)"
            " WHERE event = 'escalated'",
        ),
    ),
    Migration(
        3,
        "audit chain heads",
        (
            # One row per audit chain: its head at the last checkpoint, so a file
            # emptied or cut back is caught (audit verify). Moved on only from the
            # head its writer last kept (keep_audit_head), never backwards.
            """CREATE TABLE audit_heads (
                chain TEXT PRIMARY KEY,
                seq   INTEGER NOT NULL CHECK (seq > 0),
                hash  TEXT NOT NULL,
                at    {instant} NOT NULL
            )""",
        ),
    ),
    Migration(
        4,
        "console worklists: messages by time, open and breached deadlines by time",
        (
            # The console's pages read by these, a page at a time (keyset), so a
            # page costs the same with 100,000 messages as with ten.
            "CREATE INDEX messages_by_created ON messages (created_at)",
            "CREATE INDEX deadlines_open_by_due ON deadlines (due_at, deadline_id)"
            " WHERE closed_at IS NULL",
            "CREATE INDEX deadlines_breached_by_closing ON deadlines (closed_at, deadline_id)"
            " WHERE breached",
        ),
    ),
    Migration(
        5,
        "quarantined messages",
        (
            # The quarantine keeper's copy of each message taken off gateway.quarantine:
            # header facts, why, the envelope as it was (sealed: nothing here can read it),
            # and what an operator did with it. The body is dropped once discarded,
            # released or expired; the row stays, as the record of what happened.
            """CREATE TABLE quarantine (
                entry_id       TEXT PRIMARY KEY,
                message_id     TEXT NOT NULL,
                correlation_id TEXT,
                message_type   TEXT,
                sender         TEXT,
                recipients     TEXT NOT NULL,
                created_at     {instant},
                failed_check   TEXT NOT NULL,
                reason         TEXT NOT NULL,
                source         TEXT NOT NULL,
                quarantined_at {instant} NOT NULL,
                size           INTEGER NOT NULL,
                body_sha256    TEXT NOT NULL,
                body           {blob},
                status         TEXT NOT NULL
                    CHECK (status IN ('held', 'released', 'discarded', 'expired')),
                settled_at     {instant},
                settled_by     TEXT,
                settle_reason  TEXT,
                CHECK (status = 'held' OR settled_at IS NOT NULL)
            )""",
            "CREATE INDEX quarantine_by_time ON quarantine (status, quarantined_at, entry_id)",
            "CREATE INDEX quarantine_by_message ON quarantine (message_id)",
            # The same copy taken twice (the keeper stopped between keeping and acking it)
            # is one entry while it is held.
            "CREATE UNIQUE INDEX quarantine_one_held_copy ON quarantine (body_sha256, reason)"
            " WHERE status = 'held'",
        ),
    ),
    Migration(
        6,
        "indexes for message search",
        (
            # `mash-gateway messages` pages newest first by (created_at, message_id):
            # each filter has an index in that order, so a page is an index range.
            "CREATE INDEX messages_by_time ON messages (created_at, message_id)",
            "CREATE INDEX messages_by_sender ON messages (sender, created_at, message_id)",
            "CREATE INDEX messages_by_type ON messages (message_type, created_at, message_id)",
            "CREATE INDEX messages_by_state_time ON messages (state, created_at, message_id)",
            "CREATE INDEX recipients_by_agency ON message_recipients (agency, message_id)",
        ),
    ),
    Migration(
        7,
        "each message's attachment sections",
        (
            # What the signed header states of each file: its place, sealed length and
            # SHA-256. The router cannot read a file's name or type, nor is either kept:
            # a name can be personal data; the digest matches the receipt's.
            """CREATE TABLE message_attachments (
                message_id        TEXT NOT NULL REFERENCES messages (message_id) ON DELETE CASCADE,
                position          INTEGER NOT NULL,
                ciphertext_length BIGINT NOT NULL,
                ciphertext_sha256 TEXT NOT NULL,
                PRIMARY KEY (message_id, position)
            )""",
        ),
    ),
)
