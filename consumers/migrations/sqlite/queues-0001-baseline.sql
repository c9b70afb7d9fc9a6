-- The recipients' referral queues as QueueStore created them before migrations.
CREATE TABLE IF NOT EXISTS referrals (
    recipient_id    TEXT NOT NULL,
    referral_id     TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    envelope        BLOB NOT NULL,
    taken_at        TEXT,
    taken_by        TEXT,
    receipt_sent_at TEXT,
    PRIMARY KEY (recipient_id, referral_id)
);
CREATE INDEX IF NOT EXISTS referrals_by_recipient ON referrals (recipient_id, received_at);
