-- The sign-in throttle's lanes as SignInThrottle created them before migrations: a failure count and the last failure's time per lane.
CREATE TABLE IF NOT EXISTS lanes (
    lane TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure REAL NOT NULL
);
