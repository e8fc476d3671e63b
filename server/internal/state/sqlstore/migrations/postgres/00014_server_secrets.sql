-- +goose Up
-- Secrets every replica must share, made once by whichever replica needs
-- one first (the device session ticket key).
CREATE TABLE server_secrets (
    name       TEXT    PRIMARY KEY,
    value      BYTEA    NOT NULL,
    created_ms BIGINT NOT NULL
);

-- +goose Down
DROP TABLE server_secrets;
