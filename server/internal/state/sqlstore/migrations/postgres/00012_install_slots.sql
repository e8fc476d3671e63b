-- +goose Up
-- An assignment records the site and care area the device had when it was
-- claimed, so replicas count a site's unfinished assignments in the
-- database (ClaimAssignment) and a cap holds exactly across replicas.
ALTER TABLE rollout_devices ADD COLUMN site TEXT NOT NULL DEFAULT '';
ALTER TABLE rollout_devices ADD COLUMN care_area TEXT NOT NULL DEFAULT '';
UPDATE rollout_devices SET
    site = COALESCE((SELECT d.site FROM devices d WHERE d.id = rollout_devices.device_id), ''),
    care_area = COALESCE((SELECT d.care_area FROM devices d WHERE d.id = rollout_devices.device_id), '');
CREATE INDEX rollout_devices_by_site ON rollout_devices (rollout_id, site, care_area, state);

-- +goose Down
DROP INDEX rollout_devices_by_site;
ALTER TABLE rollout_devices DROP COLUMN care_area;
ALTER TABLE rollout_devices DROP COLUMN site;
