-- The Operation Encompass deadline monitor's state as EncompassMonitor created it before migrations.
CREATE TABLE IF NOT EXISTS tracked (
    notification_id TEXT PRIMARY KEY,
    desk            TEXT NOT NULL,
    recipient_id    TEXT,
    setting_urn     TEXT,
    subject         TEXT,
    recorded_at     TEXT NOT NULL,
    due_by          TEXT NOT NULL,
    calendar_version TEXT NOT NULL,
    delivered_at    TEXT,
    acknowledged_at TEXT,
    acknowledged_by TEXT,
    settled         INTEGER NOT NULL DEFAULT 0,
    incident_at     TEXT,
    police_due_by   TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    notification_id TEXT NOT NULL,
    step            TEXT NOT NULL,
    fired_at        TEXT NOT NULL,
    PRIMARY KEY (notification_id, step)
);
CREATE INDEX IF NOT EXISTS tracked_open ON tracked (settled, acknowledged_at);
CREATE TABLE IF NOT EXISTS deliveries (notification_id TEXT PRIMARY KEY, delivered_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS acknowledgements (
    notification_id TEXT PRIMARY KEY, acknowledged_at TEXT NOT NULL, acknowledged_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS unreached (
    notification_id TEXT NOT NULL, step TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (notification_id, step)
);
