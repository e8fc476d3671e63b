-- +goose Up
-- Console sessions: an operator token exchanged once for a server-side
-- session. Only the SHA-256 of the session id is stored.
CREATE TABLE sessions (
    id_hash    TEXT   PRIMARY KEY,
    token_id   TEXT   NOT NULL,
    csrf       TEXT   NOT NULL,
    created_ms BIGINT NOT NULL,
    seen_ms    BIGINT NOT NULL
);
CREATE INDEX sessions_by_token ON sessions (token_id);

-- +goose Down
DROP TABLE sessions;
