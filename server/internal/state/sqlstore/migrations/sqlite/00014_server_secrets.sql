-- +goose Up
-- Secrets every replica must share, made once by whichever replica needs
-- one first (the device session ticket key).
CREATE TABLE server_secrets (
    name       TEXT    PRIMARY KEY,
    value      BLOB    NOT NULL,
    created_ms INTEGER NOT NULL
);

-- +goose Down
DROP TABLE server_secrets;
