-- +goose Up
-- Post-market vigilance: vulnerability records (normalized JSON) with
-- their lookup keys and aliases, the KEV catalog, releases' SBOM
-- components with their keys, findings with triage and clocks, and the
-- state of scheduled feeds.
CREATE TABLE vuln_records (
    source      TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    hash        TEXT    NOT NULL,
    withdrawn   INTEGER NOT NULL,
    data        TEXT    NOT NULL,
    imported_ms INTEGER  NOT NULL,
    PRIMARY KEY (source, id)
);
CREATE TABLE vuln_keys (
    source TEXT NOT NULL,
    id     TEXT NOT NULL,
    kind   TEXT NOT NULL,
    k1     TEXT NOT NULL,
    k2     TEXT NOT NULL
);
CREATE INDEX vuln_keys_by_key ON vuln_keys (kind, k1, k2);
CREATE INDEX vuln_keys_by_record ON vuln_keys (source, id);
CREATE TABLE vuln_aliases (
    alias  TEXT NOT NULL,
    source TEXT NOT NULL,
    id     TEXT NOT NULL
);
CREATE INDEX vuln_aliases_by_alias ON vuln_aliases (alias);
CREATE INDEX vuln_aliases_by_record ON vuln_aliases (source, id);
CREATE TABLE kev_entries (
    cve_id  TEXT PRIMARY KEY,
    data    TEXT NOT NULL
);
CREATE TABLE kev_catalog (
    id      INTEGER PRIMARY KEY,
    version TEXT NOT NULL
);
CREATE TABLE sboms (
    product      TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    target       TEXT    NOT NULL,
    sha256       TEXT    NOT NULL,
    spec_version TEXT    NOT NULL,
    indexed_ms   INTEGER  NOT NULL,
    PRIMARY KEY (product, version)
);
CREATE TABLE sbom_components (
    product      TEXT NOT NULL,
    version      TEXT NOT NULL,
    bom_ref      TEXT NOT NULL,
    name         TEXT NOT NULL,
    comp_version TEXT NOT NULL,
    purl         TEXT NOT NULL,
    cpe          TEXT NOT NULL,
    keys         TEXT NOT NULL
);
CREATE INDEX sbom_components_by_release ON sbom_components (product, version);
CREATE TABLE sbom_component_keys (
    product TEXT NOT NULL,
    version TEXT NOT NULL,
    bom_ref TEXT NOT NULL,
    kind    TEXT NOT NULL,
    k1      TEXT NOT NULL,
    k2      TEXT NOT NULL
);
CREATE INDEX sbom_component_keys_by_key ON sbom_component_keys (kind, k1, k2);
CREATE INDEX sbom_component_keys_by_release ON sbom_component_keys (product, version);
CREATE TABLE findings (
    id            TEXT PRIMARY KEY,
    vuln_source   TEXT    NOT NULL,
    vuln_id       TEXT    NOT NULL,
    product       TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    data          TEXT    NOT NULL,
    kev           INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    closed_reason TEXT    NOT NULL,
    risk          TEXT    NOT NULL,
    vex_status    TEXT    NOT NULL,
    justification TEXT    NOT NULL,
    rationale     TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    triaged_by    TEXT    NOT NULL,
    triaged_ms    INTEGER  NOT NULL,
    aware_ms      INTEGER  NOT NULL,
    aware_reason  TEXT    NOT NULL,
    created_ms    INTEGER  NOT NULL,
    updated_ms    INTEGER  NOT NULL,
    closed_ms     INTEGER  NOT NULL,
    notified_ms   INTEGER  NOT NULL,
    fixed_ms      INTEGER  NOT NULL,
    exposure_peak INTEGER  NOT NULL
);
CREATE INDEX findings_by_release ON findings (product, version);
CREATE INDEX findings_by_vuln ON findings (vuln_id);
CREATE INDEX findings_by_status ON findings (status);
CREATE TABLE feed_state (
    name          TEXT PRIMARY KEY,
    etag          TEXT    NOT NULL,
    last_modified TEXT    NOT NULL,
    fetched_ms    INTEGER  NOT NULL,
    succeeded_ms  INTEGER  NOT NULL,
    message       TEXT    NOT NULL
);

-- +goose Down
DROP TABLE feed_state;
DROP TABLE findings;
DROP TABLE sbom_component_keys;
DROP TABLE sbom_components;
DROP TABLE sboms;
DROP TABLE kev_catalog;
DROP TABLE kev_entries;
DROP TABLE vuln_aliases;
DROP TABLE vuln_keys;
DROP TABLE vuln_records;
