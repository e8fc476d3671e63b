package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/vigil-ota/vigil/server/internal/state"
)

// keyChunk bounds the keys of one lookup query.
const keyChunk = 100

// keyWhere builds "(kind = ? AND k1 = ? AND k2 = ?) OR …" for keys.
func keyWhere(prefix string, keys []state.IndexKey) (string, []any) {
	parts := make([]string, 0, len(keys))
	args := make([]any, 0, 3*len(keys))
	for _, k := range keys {
		parts = append(parts, "("+prefix+"kind = ? AND "+prefix+"k1 = ? AND "+prefix+"k2 = ?)")
		args = append(args, k.Kind, k.K1, k.K2)
	}
	return strings.Join(parts, " OR "), args
}

func dedupeKeys(keys []state.IndexKey) []state.IndexKey {
	seen := map[state.IndexKey]bool{}
	out := keys[:0:0]
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// RecordHashes implements state.VulnStore.
func (s *Store) RecordHashes(ctx context.Context, source string, ids []string) (map[string]string, error) {
	out := map[string]string{}
	for i := 0; i < len(ids); i += keyChunk {
		chunk := ids[i:min(i+keyChunk, len(ids))]
		args := []any{source}
		marks := make([]string, len(chunk))
		for j, id := range chunk {
			marks[j], args = "?", append(args, id)
		}
		rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT id, hash FROM vuln_records WHERE source = ? AND id IN ("+strings.Join(marks, ", ")+")"), args...)
		if err != nil {
			return nil, s.fail("read record hashes", err)
		}
		for rows.Next() {
			var id, h string
			if err := rows.Scan(&id, &h); err != nil {
				rows.Close()
				return nil, s.fail("read record hashes", err)
			}
			out[id] = h
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, s.fail("read record hashes", err)
		}
	}
	return out, nil
}

// CountRecords implements state.VulnStore.
func (s *Store) CountRecords(ctx context.Context, source string) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, s.d.rebind("SELECT COUNT(*) FROM vuln_records WHERE source = ?"), source).Scan(&n)
	return n, s.fail("count records", err)
}

// PutRecords implements state.VulnStore.
func (s *Store) PutRecords(ctx context.Context, rs []state.VulnRecord) error {
	if len(rs) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("store records", err)
	}
	defer tx.Rollback()
	up := s.d.rebind(`INSERT INTO vuln_records (source, id, hash, withdrawn, data, imported_ms) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (source, id) DO UPDATE SET hash = excluded.hash, withdrawn = excluded.withdrawn, data = excluded.data, imported_ms = excluded.imported_ms`)
	for _, r := range rs {
		if _, err := tx.ExecContext(ctx, up, r.Source, r.ID, r.Hash, boolInt(r.Withdrawn), string(r.Data), ms(r.Imported)); err != nil {
			return s.fail("store records", err)
		}
		for _, q := range []string{"DELETE FROM vuln_keys WHERE source = ? AND id = ?", "DELETE FROM vuln_aliases WHERE source = ? AND id = ?"} {
			if _, err := tx.ExecContext(ctx, s.d.rebind(q), r.Source, r.ID); err != nil {
				return s.fail("store records", err)
			}
		}
		for _, k := range dedupeKeys(r.Keys) {
			if _, err := tx.ExecContext(ctx, s.d.rebind("INSERT INTO vuln_keys (source, id, kind, k1, k2) VALUES (?, ?, ?, ?, ?)"), r.Source, r.ID, k.Kind, k.K1, k.K2); err != nil {
				return s.fail("store records", err)
			}
		}
		for _, a := range append([]string{r.ID}, r.Aliases...) {
			if _, err := tx.ExecContext(ctx, s.d.rebind("INSERT INTO vuln_aliases (alias, source, id) VALUES (?, ?, ?)"), a, r.Source, r.ID); err != nil {
				return s.fail("store records", err)
			}
		}
	}
	return s.fail("store records", tx.Commit())
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

const recordColumns = "r.source, r.id, r.hash, r.withdrawn, r.data, r.imported_ms"

func scanRecords(rows *sql.Rows) ([]state.VulnRecord, error) {
	defer rows.Close()
	var out []state.VulnRecord
	for rows.Next() {
		var r state.VulnRecord
		var w int
		var data string
		var imp int64
		if err := rows.Scan(&r.Source, &r.ID, &r.Hash, &w, &data, &imp); err != nil {
			return nil, err
		}
		r.Withdrawn, r.Data, r.Imported = w != 0, []byte(data), fromMS(imp)
		out = append(out, r)
	}
	return out, rows.Err()
}

// RecordsByKeys implements state.VulnStore.
func (s *Store) RecordsByKeys(ctx context.Context, keys []state.IndexKey) ([]state.VulnRecord, error) {
	keys = dedupeKeys(keys)
	seen := map[[2]string]bool{}
	var out []state.VulnRecord
	for i := 0; i < len(keys); i += keyChunk {
		where, args := keyWhere("k.", keys[i:min(i+keyChunk, len(keys))])
		rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT DISTINCT "+recordColumns+" FROM vuln_keys k JOIN vuln_records r ON r.source = k.source AND r.id = k.id WHERE "+where), args...)
		if err != nil {
			return nil, s.fail("find records", err)
		}
		rs, err := scanRecords(rows)
		if err != nil {
			return nil, s.fail("find records", err)
		}
		for _, r := range rs {
			if k := [2]string{r.Source, r.ID}; !seen[k] {
				seen[k] = true
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// RecordsByAlias implements state.VulnStore.
func (s *Store) RecordsByAlias(ctx context.Context, id string) ([]state.VulnRecord, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT DISTINCT "+recordColumns+" FROM vuln_aliases a JOIN vuln_records r ON r.source = a.source AND r.id = a.id WHERE a.alias = ? ORDER BY r.source, r.id"), id)
	if err != nil {
		return nil, s.fail("find records", err)
	}
	rs, err := scanRecords(rows)
	return rs, s.fail("find records", err)
}

// PutKEV implements state.VulnStore.
func (s *Store) PutKEV(ctx context.Context, version string, entries map[string][]byte) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("store KEV", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "DELETE FROM kev_entries"); err != nil {
		return s.fail("store KEV", err)
	}
	for cve, data := range entries {
		if _, err := tx.ExecContext(ctx, s.d.rebind("INSERT INTO kev_entries (cve_id, data) VALUES (?, ?)"), cve, string(data)); err != nil {
			return s.fail("store KEV", err)
		}
	}
	if _, err := tx.ExecContext(ctx, s.d.rebind("INSERT INTO kev_catalog (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version"), version); err != nil {
		return s.fail("store KEV", err)
	}
	return s.fail("store KEV", tx.Commit())
}

// KEV implements state.VulnStore.
func (s *Store) KEV(ctx context.Context) (string, map[string][]byte, error) {
	var version string
	err := s.r.QueryRowContext(ctx, "SELECT version FROM kev_catalog WHERE id = 1").Scan(&version)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", nil, s.fail("read KEV", err)
	}
	rows, err := s.r.QueryContext(ctx, "SELECT cve_id, data FROM kev_entries")
	if err != nil {
		return "", nil, s.fail("read KEV", err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var id, data string
		if err := rows.Scan(&id, &data); err != nil {
			return "", nil, s.fail("read KEV", err)
		}
		out[id] = []byte(data)
	}
	return version, out, s.fail("read KEV", rows.Err())
}

// PutFeedState implements state.VulnStore.
func (s *Store) PutFeedState(ctx context.Context, f state.FeedState) error {
	_, err := s.w.ExecContext(ctx, s.d.rebind(`INSERT INTO feed_state (name, etag, last_modified, fetched_ms, succeeded_ms, message) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified, fetched_ms = excluded.fetched_ms,
		succeeded_ms = excluded.succeeded_ms, message = excluded.message`), f.Name, f.ETag, f.LastModified, ms(f.Fetched), ms(f.Succeeded), f.Message)
	return s.fail("store feed state", err)
}

// FeedStates implements state.VulnStore.
func (s *Store) FeedStates(ctx context.Context) ([]state.FeedState, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT name, etag, last_modified, fetched_ms, succeeded_ms, message FROM feed_state ORDER BY name")
	if err != nil {
		return nil, s.fail("read feed state", err)
	}
	defer rows.Close()
	var out []state.FeedState
	for rows.Next() {
		var f state.FeedState
		var fetched, ok int64
		if err := rows.Scan(&f.Name, &f.ETag, &f.LastModified, &fetched, &ok, &f.Message); err != nil {
			return nil, s.fail("read feed state", err)
		}
		f.Fetched, f.Succeeded = fromMS(fetched), fromMS(ok)
		out = append(out, f)
	}
	return out, s.fail("read feed state", rows.Err())
}

// PutSBOM implements state.SBOMStore.
func (s *Store) PutSBOM(ctx context.Context, sb state.SBOMRecord) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("store SBOM", err)
	}
	defer tx.Rollback()
	for _, q := range []string{"DELETE FROM sboms WHERE product = ? AND version = ?", "DELETE FROM sbom_components WHERE product = ? AND version = ?",
		"DELETE FROM sbom_component_keys WHERE product = ? AND version = ?"} {
		if _, err := tx.ExecContext(ctx, s.d.rebind(q), sb.Product, sb.Version); err != nil {
			return s.fail("store SBOM", err)
		}
	}
	if _, err := tx.ExecContext(ctx, s.d.rebind("INSERT INTO sboms (product, version, target, sha256, spec_version, indexed_ms) VALUES (?, ?, ?, ?, ?, ?)"),
		sb.Product, sb.Version, sb.Target, sb.SHA256, sb.SpecVersion, ms(sb.Indexed)); err != nil {
		return s.fail("store SBOM", err)
	}
	for _, c := range sb.Components {
		keys, _ := json.Marshal(c.Keys)
		if _, err := tx.ExecContext(ctx, s.d.rebind("INSERT INTO sbom_components (product, version, bom_ref, name, comp_version, purl, cpe, keys) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
			sb.Product, sb.Version, c.BOMRef, c.Name, c.CompVersion, c.PURL, c.CPE, string(keys)); err != nil {
			return s.fail("store SBOM", err)
		}
		for _, k := range dedupeKeys(c.Keys) {
			if _, err := tx.ExecContext(ctx, s.d.rebind("INSERT INTO sbom_component_keys (product, version, bom_ref, kind, k1, k2) VALUES (?, ?, ?, ?, ?, ?)"),
				sb.Product, sb.Version, c.BOMRef, k.Kind, k.K1, k.K2); err != nil {
				return s.fail("store SBOM", err)
			}
		}
	}
	return s.fail("store SBOM", tx.Commit())
}

func scanComponents(rows *sql.Rows) ([]state.SBOMComponent, error) {
	defer rows.Close()
	var out []state.SBOMComponent
	for rows.Next() {
		var c state.SBOMComponent
		var keys string
		if err := rows.Scan(&c.Product, &c.Version, &c.BOMRef, &c.Name, &c.CompVersion, &c.PURL, &c.CPE, &keys); err != nil {
			return nil, err
		}
		json.Unmarshal([]byte(keys), &c.Keys)
		out = append(out, c)
	}
	return out, rows.Err()
}

const componentColumns = "c.product, c.version, c.bom_ref, c.name, c.comp_version, c.purl, c.cpe, c.keys"

// SBOM implements state.SBOMStore.
func (s *Store) SBOM(ctx context.Context, product, version string) (state.SBOMRecord, error) {
	sb := state.SBOMRecord{Product: product, Version: version}
	var idx int64
	err := s.r.QueryRowContext(ctx, s.d.rebind("SELECT target, sha256, spec_version, indexed_ms FROM sboms WHERE product = ? AND version = ?"), product, version).
		Scan(&sb.Target, &sb.SHA256, &sb.SpecVersion, &idx)
	if errors.Is(err, sql.ErrNoRows) {
		return sb, state.NotFound("SBOM of " + product + "@" + version)
	}
	if err != nil {
		return sb, s.fail("read SBOM", err)
	}
	sb.Indexed = fromMS(idx)
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT "+componentColumns+" FROM sbom_components c WHERE c.product = ? AND c.version = ? ORDER BY c.bom_ref"), product, version)
	if err != nil {
		return sb, s.fail("read SBOM", err)
	}
	sb.Components, err = scanComponents(rows)
	return sb, s.fail("read SBOM", err)
}

// SBOMs implements state.SBOMStore.
func (s *Store) SBOMs(ctx context.Context, product string) ([]state.SBOMRecord, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT product, version, target, sha256, spec_version, indexed_ms FROM sboms WHERE ? = '' OR product = ? ORDER BY product, version"), product, product)
	if err != nil {
		return nil, s.fail("list SBOMs", err)
	}
	defer rows.Close()
	var out []state.SBOMRecord
	for rows.Next() {
		var sb state.SBOMRecord
		var idx int64
		if err := rows.Scan(&sb.Product, &sb.Version, &sb.Target, &sb.SHA256, &sb.SpecVersion, &idx); err != nil {
			return nil, s.fail("list SBOMs", err)
		}
		sb.Indexed = fromMS(idx)
		out = append(out, sb)
	}
	return out, s.fail("list SBOMs", rows.Err())
}

// ComponentsByKeys implements state.SBOMStore.
func (s *Store) ComponentsByKeys(ctx context.Context, keys []state.IndexKey) ([]state.SBOMComponent, error) {
	keys = dedupeKeys(keys)
	seen := map[[3]string]bool{}
	var out []state.SBOMComponent
	for i := 0; i < len(keys); i += keyChunk {
		where, args := keyWhere("k.", keys[i:min(i+keyChunk, len(keys))])
		rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT DISTINCT "+componentColumns+` FROM sbom_component_keys k
			JOIN sbom_components c ON c.product = k.product AND c.version = k.version AND c.bom_ref = k.bom_ref WHERE `+where), args...)
		if err != nil {
			return nil, s.fail("find components", err)
		}
		cs, err := scanComponents(rows)
		if err != nil {
			return nil, s.fail("find components", err)
		}
		for _, c := range cs {
			if k := [3]string{c.Product, c.Version, c.BOMRef}; !seen[k] {
				seen[k] = true
				out = append(out, c)
			}
		}
	}
	return out, nil
}

const findingColumns = `id, vuln_source, vuln_id, product, version, data, kev, status, closed_reason, risk, vex_status, justification, rationale,
	action, triaged_by, triaged_ms, aware_ms, aware_reason, created_ms, updated_ms, closed_ms, notified_ms, fixed_ms, exposure_peak`

func scanFinding(sc scanner) (state.FindingRecord, error) {
	var f state.FindingRecord
	var data string
	var kev int
	var triaged, aware, created, updated, closed, notified, fixed int64
	err := sc.Scan(&f.ID, &f.VulnSource, &f.VulnID, &f.Product, &f.Version, &data, &kev, &f.Status, &f.ClosedReason, &f.Risk, &f.VEXStatus,
		&f.Justification, &f.Rationale, &f.Action, &f.TriagedBy, &triaged, &aware, &f.AwareReason, &created, &updated, &closed, &notified, &fixed, &f.ExposurePeak)
	f.Data, f.KEV = []byte(data), kev != 0
	f.Triaged = fromMS(triaged)
	f.Aware, f.Created, f.Updated, f.Closed, f.Notified, f.FixDeployed = fromMS(aware), fromMS(created), fromMS(updated), fromMS(closed), fromMS(notified), fromMS(fixed)
	return f, err
}

// PutFinding implements state.FindingStore.
func (s *Store) PutFinding(ctx context.Context, f state.FindingRecord) (bool, error) {
	isNew, err := s.PutFindings(ctx, []state.FindingRecord{f})
	if err != nil {
		return false, err
	}
	return isNew[0], nil
}

// PutFindings implements state.FindingStore.
func (s *Store) PutFindings(ctx context.Context, fs []state.FindingRecord) ([]bool, error) {
	out := make([]bool, len(fs))
	if len(fs) == 0 {
		return out, nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, s.fail("store findings", err)
	}
	defer tx.Rollback()
	up := s.d.rebind(`UPDATE findings SET data = ?, kev = ?, status = ?, closed_reason = ?, closed_ms = ?, updated_ms = ? WHERE id = ?`)
	ins := s.d.rebind(`INSERT INTO findings (` + findingColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	for i, f := range fs {
		res, err := tx.ExecContext(ctx, up, string(f.Data), boolInt(f.KEV), f.Status, f.ClosedReason, ms(f.Closed), ms(f.Updated), f.ID)
		if err != nil {
			return nil, s.fail("store findings", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, ins, f.ID, f.VulnSource, f.VulnID, f.Product, f.Version, string(f.Data), boolInt(f.KEV), f.Status, f.ClosedReason,
			f.Risk, f.VEXStatus, f.Justification, f.Rationale, f.Action, f.TriagedBy, ms(f.Triaged), ms(f.Aware), f.AwareReason, ms(f.Created), ms(f.Updated),
			ms(f.Closed), ms(f.Notified), ms(f.FixDeployed), f.ExposurePeak); err != nil {
			return nil, s.fail("store findings", err)
		}
		out[i] = true
	}
	return out, s.fail("store findings", tx.Commit())
}

// UpdateTriage implements state.FindingStore.
func (s *Store) UpdateTriage(ctx context.Context, f state.FindingRecord) error {
	res, err := s.w.ExecContext(ctx, s.d.rebind(`UPDATE findings SET risk = ?, vex_status = ?, justification = ?, rationale = ?, action = ?, triaged_by = ?,
		triaged_ms = ?, aware_ms = ?, aware_reason = ?, notified_ms = ?, fixed_ms = ?, exposure_peak = ?, updated_ms = ? WHERE id = ?`),
		f.Risk, f.VEXStatus, f.Justification, f.Rationale, f.Action, f.TriagedBy, ms(f.Triaged), ms(f.Aware), f.AwareReason, ms(f.Notified), ms(f.FixDeployed), f.ExposurePeak, ms(f.Updated), f.ID)
	if err != nil {
		return s.fail("update finding", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return state.NotFound("finding " + f.ID)
	}
	return nil
}

// Finding implements state.FindingStore.
func (s *Store) Finding(ctx context.Context, id string) (state.FindingRecord, error) {
	f, err := scanFinding(s.r.QueryRowContext(ctx, s.d.rebind("SELECT "+findingColumns+" FROM findings WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return f, state.NotFound("finding " + id)
	}
	return f, s.fail("read finding", err)
}

// MaxFindings bounds one listing.
const MaxFindings = 100000

// Findings implements state.FindingStore.
func (s *Store) Findings(ctx context.Context, ff state.FindingFilter) ([]state.FindingRecord, error) {
	cols := findingColumns
	if ff.NoData {
		cols = strings.Replace(cols, "data,", "'' AS data,", 1)
	}
	q := "SELECT " + cols + " FROM findings WHERE 1 = 1"
	var args []any
	for _, c := range []struct{ col, v string }{{"product", ff.Product}, {"version", ff.Version}, {"vuln_id", ff.VulnID}, {"status", ff.Status}, {"risk", ff.Risk}} {
		if c.v != "" {
			q += " AND " + c.col + " = ?"
			args = append(args, c.v)
		}
	}
	if ff.KEVOnly {
		q += " AND kev = 1"
	}
	limit := ff.Limit
	if limit <= 0 || limit > MaxFindings {
		limit = MaxFindings
	}
	q += " ORDER BY vuln_id, product, version, id LIMIT " + strconv.Itoa(limit)
	rows, err := s.r.QueryContext(ctx, s.d.rebind(q), args...)
	if err != nil {
		return nil, s.fail("list findings", err)
	}
	defer rows.Close()
	var out []state.FindingRecord
	for rows.Next() {
		f, err := scanFinding(rows)
		if err != nil {
			return nil, s.fail("list findings", err)
		}
		out = append(out, f)
	}
	return out, s.fail("list findings", rows.Err())
}
