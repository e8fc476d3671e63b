-- +goose Up
-- Current published version of each TUF role's metadata. Times are Unix
-- milliseconds (UTC) in both backends, so the two schemas stay alike.
CREATE TABLE tuf_role_versions (
    role            TEXT   PRIMARY KEY,
    version         BIGINT NOT NULL CHECK (version >= 1),
    sha256          TEXT   NOT NULL,
    length          BIGINT NOT NULL,
    expires_unix_ms BIGINT NOT NULL,
    updated_unix_ms BIGINT NOT NULL
);

-- +goose Down
DROP TABLE tuf_role_versions;
