-- The school inbox: alerts (sealed envelopes), and their acknowledgements.
CREATE TABLE IF NOT EXISTS alerts (
    notification_id TEXT PRIMARY KEY,
    setting_urn     TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    envelope        BYTEA NOT NULL,
    acknowledged_at TEXT,
    acknowledged_by TEXT,
    acknowledged_role TEXT,
    acknowledgement_sent_at TEXT
);
CREATE INDEX IF NOT EXISTS alerts_by_setting ON alerts (setting_urn, received_at);
