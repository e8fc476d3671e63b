-- +goose Up
-- Fleet registry and rollouts. Lists are stored as newline-separated text and
-- JSON documents as text, the same in both backends.
CREATE TABLE sites (
    name          TEXT    PRIMARY KEY,
    time_zone     TEXT    NOT NULL,
    windows       TEXT    NOT NULL,
    care_areas    TEXT    NOT NULL,
    site_cap      INTEGER NOT NULL,
    care_area_cap INTEGER NOT NULL,
    auto_approve  TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL
);
CREATE TABLE devices (
    id             TEXT    PRIMARY KEY,
    udi_di         TEXT    NOT NULL,
    product        TEXT    NOT NULL,
    hardware       TEXT    NOT NULL,
    site           TEXT    NOT NULL REFERENCES sites (name),
    care_area      TEXT    NOT NULL,
    tags           TEXT    NOT NULL,
    public_key     TEXT    NOT NULL,
    installed      TEXT    NOT NULL,
    decommissioned INTEGER NOT NULL,
    last_seen_ms   INTEGER NOT NULL,
    created_ms     INTEGER NOT NULL
);
CREATE INDEX devices_by_product ON devices (product);
CREATE TABLE device_nonces (
    device_id  TEXT    NOT NULL,
    nonce      TEXT    NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, nonce)
);
CREATE TABLE rollouts (
    id           TEXT    PRIMARY KEY,
    product      TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    target       TEXT    NOT NULL,
    plan         TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    current_wave INTEGER NOT NULL,
    wave_opened_ms INTEGER NOT NULL,
    halt_reason  TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    revision     INTEGER NOT NULL
);
CREATE INDEX rollouts_by_product ON rollouts (product, state);
CREATE TABLE approvals (
    rollout_id    TEXT    NOT NULL REFERENCES rollouts (id),
    wave          INTEGER NOT NULL,
    site          TEXT    NOT NULL,
    approved_by   TEXT    NOT NULL,
    comment       TEXT    NOT NULL,
    not_before_ms INTEGER NOT NULL,
    at_ms         INTEGER NOT NULL,
    revoked       INTEGER NOT NULL,
    PRIMARY KEY (rollout_id, wave, site)
);
CREATE TABLE deferrals (
    rollout_id TEXT    NOT NULL REFERENCES rollouts (id),
    wave       INTEGER NOT NULL,
    site       TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    until_ms   INTEGER NOT NULL,
    PRIMARY KEY (rollout_id, wave, site)
);
CREATE TABLE rollout_devices (
    rollout_id TEXT    NOT NULL REFERENCES rollouts (id),
    device_id  TEXT    NOT NULL,
    wave       INTEGER NOT NULL,
    state      TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (rollout_id, device_id)
);
-- One row; bumped by every change a check-in answer depends on, so
-- replicas know when to reload their cached rollout state.
CREATE TABLE fleet_epoch (
    id    INTEGER PRIMARY KEY,
    epoch INTEGER NOT NULL
);
INSERT INTO fleet_epoch (id, epoch) VALUES (1, 0);

-- +goose Down
DROP TABLE fleet_epoch;
DROP TABLE rollout_devices;
DROP TABLE deferrals;
DROP TABLE approvals;
DROP TABLE rollouts;
DROP TABLE device_nonces;
DROP TABLE devices;
DROP TABLE sites;
