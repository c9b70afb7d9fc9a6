-- depends: sessions-0001-baseline
-- Which web app a session belongs to, once several share one database (empty: the app's own file).
ALTER TABLE sessions ADD COLUMN realm TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS sessions_by_realm_user ON sessions (realm, user_id);
