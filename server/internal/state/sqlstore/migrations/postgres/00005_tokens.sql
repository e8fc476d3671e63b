-- +goose Up
-- Operator API tokens. Only a SHA-256 of each secret is kept.
CREATE TABLE tokens (
    id          TEXT    PRIMARY KEY,
    secret_hash TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    sites       TEXT    NOT NULL,
    expires_ms  BIGINT NOT NULL,
    revoked     BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL
);

-- +goose Down
DROP TABLE tokens;
