-- +goose Up
-- Install events reported by devices. The id is the agent's, stable for one
-- state change, so a resent event is stored once.
CREATE TABLE device_events (
    id               TEXT    PRIMARY KEY,
    device_id        TEXT    NOT NULL,
    target           TEXT    NOT NULL,
    version          TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    time_unix_ms     INTEGER NOT NULL,
    received_unix_ms INTEGER NOT NULL
);
CREATE INDEX device_events_by_device ON device_events (device_id, time_unix_ms);

-- +goose Down
DROP TABLE device_events;
