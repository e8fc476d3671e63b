-- +goose Up
-- Incident response (state/response.go): disclosure cases, incidents,
-- customer notices and their per-site deliveries, site contacts. Each
-- record is its owner's JSON (data) with the columns listings filter by,
-- and a revision that refuses lost updates.
CREATE TABLE cvd_cases (
    id         TEXT    PRIMARY KEY,
    status     TEXT    NOT NULL,
    ref        TEXT    NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    due_ms     BIGINT NOT NULL,
    rev        BIGINT NOT NULL,
    data       TEXT    NOT NULL
);
CREATE INDEX cvd_cases_by_ref ON cvd_cases (ref, created_ms);
CREATE INDEX cvd_cases_by_created ON cvd_cases (created_ms);
CREATE TABLE cvd_attachments (
    case_id    TEXT    NOT NULL,
    idx        INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    media_type TEXT    NOT NULL,
    sha256     TEXT    NOT NULL,
    data       BYTEA    NOT NULL,
    PRIMARY KEY (case_id, idx)
);
CREATE TABLE incidents (
    id         TEXT    PRIMARY KEY,
    status     TEXT    NOT NULL,
    ref        TEXT    NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    due_ms     BIGINT NOT NULL,
    rev        BIGINT NOT NULL,
    data       TEXT    NOT NULL
);
CREATE INDEX incidents_by_created ON incidents (created_ms);
CREATE TABLE notices (
    id         TEXT    PRIMARY KEY,
    status     TEXT    NOT NULL,
    ref        TEXT    NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    due_ms     BIGINT NOT NULL,
    rev        BIGINT NOT NULL,
    data       TEXT    NOT NULL
);
CREATE INDEX notices_by_created ON notices (created_ms);
CREATE TABLE notice_deliveries (
    id         TEXT    PRIMARY KEY,
    status     TEXT    NOT NULL,
    ref        TEXT    NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    due_ms     BIGINT NOT NULL,
    rev        BIGINT NOT NULL,
    data       TEXT    NOT NULL
);
CREATE INDEX notice_deliveries_by_ref ON notice_deliveries (ref, created_ms);
CREATE INDEX notice_deliveries_due ON notice_deliveries (due_ms);
CREATE TABLE site_contacts (
    id         TEXT    PRIMARY KEY,
    status     TEXT    NOT NULL,
    ref        TEXT    NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    due_ms     BIGINT NOT NULL,
    rev        BIGINT NOT NULL,
    data       TEXT    NOT NULL
);
-- Releases as they entered and left the signed product roles.
CREATE TABLE release_history (
    product      TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    target       TEXT    NOT NULL,
    published_ms BIGINT NOT NULL,
    revoked_ms   BIGINT NOT NULL,
    PRIMARY KEY (product, version)
);
CREATE INDEX device_events_committed ON device_events (state, device_id);

-- +goose Down
DROP INDEX device_events_committed;
DROP TABLE release_history;
DROP TABLE site_contacts;
DROP TABLE notice_deliveries;
DROP TABLE notices;
DROP TABLE incidents;
DROP TABLE cvd_attachments;
DROP TABLE cvd_cases;
