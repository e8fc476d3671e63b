-- +goose Up
-- The console and `vigil device list` page through devices by site.
CREATE INDEX devices_by_site ON devices (site, id);

-- +goose Down
DROP INDEX devices_by_site;
