-- Password accounts (Key Adults, officers) kept in a shared database: each kind's JSON document as one row,
-- with a revision that every change raises, so a reader can tell in one query whether to read it again.
CREATE TABLE IF NOT EXISTS account_documents (
    name     TEXT PRIMARY KEY,
    content  TEXT NOT NULL,
    revision INTEGER NOT NULL
);
