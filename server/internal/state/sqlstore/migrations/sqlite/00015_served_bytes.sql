-- +goose Up
-- Bytes of release files served, by release and kind (full image, delta,
-- SBOM): what rollout status shows as "served full vs delta".
CREATE TABLE served_bytes (
    product  TEXT    NOT NULL,
    version  TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    bytes    INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    PRIMARY KEY (product, version, kind)
);

-- +goose Down
DROP TABLE served_bytes;
