-- +goose Up
-- When a progress row last changed, by the database's clock: replicas
-- re-read only the rows changed since their last read (ProgressChanged)
-- instead of every row of every active rollout each second.
ALTER TABLE rollout_devices ADD COLUMN changed_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX rollout_devices_changed ON rollout_devices (rollout_id, changed_ms);

-- +goose Down
DROP INDEX rollout_devices_changed;
ALTER TABLE rollout_devices DROP COLUMN changed_ms;
