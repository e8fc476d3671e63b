-- +goose Up
-- Hash-chained audit log (server/internal/audit): each row carries the hash
-- of the row before it.
CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY,
    time_unix_ms INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    details      TEXT    NOT NULL,
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL UNIQUE
);

-- +goose Down
DROP TABLE audit_log;
