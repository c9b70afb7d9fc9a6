-- The sign-in throttle's lanes: a failure count and the last failure's time per lane.
CREATE TABLE IF NOT EXISTS lanes (
    lane TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure DOUBLE PRECISION NOT NULL
);
