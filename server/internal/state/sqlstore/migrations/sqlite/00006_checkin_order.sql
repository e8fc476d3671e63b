-- +goose Up
-- The device's own signed time of its newest check-in (Unix ms): a replayed
-- older check-in must not set the recorded installed version back.
ALTER TABLE devices ADD COLUMN last_checkin_ms BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE devices DROP COLUMN last_checkin_ms;
