-- A worker's e-mail outbox: each message whole, under its writer's key, until sent or refused.
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY,
    message BYTEA NOT NULL,
    queued_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'refused')),
    done_at TEXT,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
