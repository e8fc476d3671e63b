-- +goose Up
-- Leases for singleton jobs: one replica at a time runs each periodic job
-- (the rollout controller, the metadata refresher, feed schedules).
CREATE TABLE leases (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_ms BIGINT NOT NULL
);

-- +goose Down
DROP TABLE leases;
