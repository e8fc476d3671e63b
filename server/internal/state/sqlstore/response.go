package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// The incident-response tables share one shape (docColumns); these helpers
// serve all of them. table is always one of the constants below, never
// input.
const (
	tableCases      = "cvd_cases"
	tableIncidents  = "incidents"
	tableNotices    = "notices"
	tableDeliveries = "notice_deliveries"
	tableContacts   = "site_contacts"
	docColumns      = "id, status, ref, created_ms, updated_ms, due_ms, rev, data"
)

func (s *Store) insertDoc(ctx context.Context, q querier, table, what string, d state.Doc) error {
	var n int
	if err := q.QueryRowContext(ctx, s.d.rebind("SELECT COUNT(*) FROM "+table+" WHERE id = ?"), d.ID).Scan(&n); err != nil {
		return s.fail("read "+what, err)
	}
	if n > 0 {
		return apperr.New(apperr.Conflict, "%s %s exists already", what, d.ID)
	}
	_, err := q.ExecContext(ctx, s.d.rebind("INSERT INTO "+table+" ("+docColumns+") VALUES (?, ?, ?, ?, ?, ?, 1, ?)"),
		d.ID, d.Status, d.Key, ms(d.Created), ms(d.Updated), ms(d.Due), string(d.Data))
	return s.fail("store "+what, err)
}

func scanDoc(sc scanner) (state.Doc, error) {
	var d state.Doc
	var created, updated, due int64
	var data string
	err := sc.Scan(&d.ID, &d.Status, &d.Key, &created, &updated, &due, &d.Rev, &data)
	d.Created, d.Updated, d.Due, d.Data = fromMS(created), fromMS(updated), fromMS(due), []byte(data)
	return d, err
}

func (s *Store) getDoc(ctx context.Context, table, what, id string) (state.Doc, error) {
	d, err := scanDoc(s.r.QueryRowContext(ctx, s.d.rebind("SELECT "+docColumns+" FROM "+table+" WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, apperr.Wrap(state.NotFound(what+" "+id), apperr.NotFound, "no %s %q", what, id)
	}
	return d, s.fail("read "+what, err)
}

func (s *Store) updateDoc(ctx context.Context, table, what string, d state.Doc) (int64, error) {
	res, err := s.w.ExecContext(ctx, s.d.rebind("UPDATE "+table+" SET status = ?, ref = ?, updated_ms = ?, due_ms = ?, rev = rev + 1, data = ? WHERE id = ? AND rev = ?"),
		d.Status, d.Key, ms(d.Updated), ms(d.Due), string(d.Data), d.ID, d.Rev)
	if err != nil {
		return 0, s.fail("update "+what, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.getDoc(ctx, table, what, d.ID); err != nil {
			return 0, err
		}
		return 0, apperr.New(apperr.Conflict, "%s %s changed meanwhile; read it again", what, d.ID)
	}
	return d.Rev + 1, nil
}

func (s *Store) listDocs(ctx context.Context, table, what string, f state.DocFilter) ([]state.Doc, error) {
	var where []string
	var args []any
	add := func(cond string, a ...any) { where, args = append(where, cond), append(args, a...) }
	if f.Status != "" {
		add("status = ?", f.Status)
	}
	if f.NotStatus != "" {
		add("status <> ?", f.NotStatus)
	}
	if f.Key != "" {
		add("ref = ?", f.Key)
	}
	if len(f.Keys) > 0 {
		marks := make([]string, len(f.Keys))
		for i, k := range f.Keys {
			marks[i] = "?"
			args = append(args, k)
		}
		where = append(where, "ref IN ("+strings.Join(marks, ", ")+")")
	}
	if f.IDPrefix != "" {
		add("id >= ? AND id < ?", f.IDPrefix, f.IDPrefix+"\uffff")
	}
	if !f.Since.IsZero() {
		add("created_ms >= ?", ms(f.Since))
	}
	if !f.Until.IsZero() {
		add("created_ms < ?", ms(f.Until))
	}
	if !f.DueBefore.IsZero() {
		add("due_ms > 0 AND due_ms <= ?", ms(f.DueBefore))
	}
	q := "SELECT " + docColumns + " FROM " + table
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_ms, id"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, s.d.rebind(q), args...)
	if err != nil {
		return nil, s.fail("list "+what, err)
	}
	defer rows.Close()
	var out []state.Doc
	for rows.Next() {
		d, err := scanDoc(rows)
		if err != nil {
			return nil, s.fail("list "+what, err)
		}
		out = append(out, d)
	}
	return out, s.fail("list "+what, rows.Err())
}

// CreateCase implements state.CaseStore.
func (s *Store) CreateCase(ctx context.Context, c state.Doc, atts []state.Attachment) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("store case", err)
	}
	defer tx.Rollback()
	if err := s.insertDoc(ctx, tx, tableCases, "case", c); err != nil {
		return err
	}
	for _, a := range atts {
		if _, err := tx.ExecContext(ctx, s.d.rebind("INSERT INTO cvd_attachments (case_id, idx, name, media_type, sha256, data) VALUES (?, ?, ?, ?, ?, ?)"),
			c.ID, a.Index, a.Name, a.MediaType, a.SHA256, a.Data); err != nil {
			return s.fail("store attachment", err)
		}
	}
	return s.fail("store case", tx.Commit())
}

// Case implements state.CaseStore.
func (s *Store) Case(ctx context.Context, id string) (state.Doc, error) {
	return s.getDoc(ctx, tableCases, "case", id)
}

// UpdateCase implements state.CaseStore.
func (s *Store) UpdateCase(ctx context.Context, c state.Doc) (int64, error) {
	return s.updateDoc(ctx, tableCases, "case", c)
}

// Cases implements state.CaseStore.
func (s *Store) Cases(ctx context.Context, f state.DocFilter) ([]state.Doc, error) {
	return s.listDocs(ctx, tableCases, "cases", f)
}

// CaseAttachments implements state.CaseStore.
func (s *Store) CaseAttachments(ctx context.Context, id string) ([]state.Attachment, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT idx, name, media_type, sha256, data FROM cvd_attachments WHERE case_id = ? ORDER BY idx"), id)
	if err != nil {
		return nil, s.fail("read attachments", err)
	}
	defer rows.Close()
	var out []state.Attachment
	for rows.Next() {
		a := state.Attachment{Case: id}
		if err := rows.Scan(&a.Index, &a.Name, &a.MediaType, &a.SHA256, &a.Data); err != nil {
			return nil, s.fail("read attachments", err)
		}
		out = append(out, a)
	}
	return out, s.fail("read attachments", rows.Err())
}

// CreateIncident implements state.IncidentStore.
func (s *Store) CreateIncident(ctx context.Context, in state.Doc) error {
	return s.insertDoc(ctx, s.w, tableIncidents, "incident", in)
}

// Incident implements state.IncidentStore.
func (s *Store) Incident(ctx context.Context, id string) (state.Doc, error) {
	return s.getDoc(ctx, tableIncidents, "incident", id)
}

// UpdateIncident implements state.IncidentStore.
func (s *Store) UpdateIncident(ctx context.Context, in state.Doc) (int64, error) {
	return s.updateDoc(ctx, tableIncidents, "incident", in)
}

// Incidents implements state.IncidentStore.
func (s *Store) Incidents(ctx context.Context, f state.DocFilter) ([]state.Doc, error) {
	return s.listDocs(ctx, tableIncidents, "incidents", f)
}

// CreateNotice implements state.NoticeStore.
func (s *Store) CreateNotice(ctx context.Context, n state.Doc, deliveries []state.Doc) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("store notice", err)
	}
	defer tx.Rollback()
	if err := s.insertDoc(ctx, tx, tableNotices, "notice", n); err != nil {
		return err
	}
	for _, d := range deliveries {
		if err := s.insertDoc(ctx, tx, tableDeliveries, "delivery", d); err != nil {
			return err
		}
	}
	return s.fail("store notice", tx.Commit())
}

// Notice implements state.NoticeStore.
func (s *Store) Notice(ctx context.Context, id string) (state.Doc, error) {
	return s.getDoc(ctx, tableNotices, "notice", id)
}

// Notices implements state.NoticeStore.
func (s *Store) Notices(ctx context.Context, f state.DocFilter) ([]state.Doc, error) {
	return s.listDocs(ctx, tableNotices, "notices", f)
}

// Deliveries implements state.NoticeStore.
func (s *Store) Deliveries(ctx context.Context, f state.DocFilter) ([]state.Doc, error) {
	return s.listDocs(ctx, tableDeliveries, "deliveries", f)
}

// UpdateDelivery implements state.NoticeStore.
func (s *Store) UpdateDelivery(ctx context.Context, d state.Doc) (int64, error) {
	return s.updateDoc(ctx, tableDeliveries, "delivery", d)
}

// PutSiteContact implements state.NoticeStore.
func (s *Store) PutSiteContact(ctx context.Context, c state.Doc) error {
	_, err := s.w.ExecContext(ctx, s.d.rebind(`INSERT INTO site_contacts (`+docColumns+`) VALUES (?, '', '', ?, ?, 0, 1, ?)
		ON CONFLICT (id) DO UPDATE SET updated_ms = excluded.updated_ms, rev = site_contacts.rev + 1, data = excluded.data`),
		c.ID, ms(c.Created), ms(c.Updated), string(c.Data))
	return s.fail("store site contacts", err)
}

// SiteContact implements state.NoticeStore.
func (s *Store) SiteContact(ctx context.Context, site string) (state.Doc, error) {
	return s.getDoc(ctx, tableContacts, "site contacts", site)
}

// NoteRelease implements state.PublishTx.
func (p *publishTx) NoteRelease(ctx context.Context, n state.ReleaseNote) error {
	var err error
	if !n.Published.IsZero() {
		_, err = p.tx.ExecContext(ctx, p.s.d.rebind(`INSERT INTO release_history (product, version, target, published_ms, revoked_ms) VALUES (?, ?, ?, ?, 0)
			ON CONFLICT (product, version) DO UPDATE SET target = excluded.target, published_ms = excluded.published_ms, revoked_ms = 0`),
			n.Product, n.Version, n.Target, ms(n.Published))
	} else {
		_, err = p.tx.ExecContext(ctx, p.s.d.rebind("UPDATE release_history SET revoked_ms = ? WHERE product = ? AND version = ?"),
			ms(n.Revoked), n.Product, n.Version)
	}
	return p.s.fail("record release", err)
}

// Release implements state.PublishTx.
func (p *publishTx) Release(ctx context.Context, product, version string) (state.ReleaseNote, error) {
	n := state.ReleaseNote{Product: product, Version: version}
	var pub, rev int64
	err := p.tx.QueryRowContext(ctx, p.s.d.rebind("SELECT target, published_ms, revoked_ms FROM release_history WHERE product = ? AND version = ?"), product, version).
		Scan(&n.Target, &pub, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return n, state.NotFound("release " + product + "@" + version)
	}
	n.Published, n.Revoked = fromMS(pub), fromMS(rev)
	return n, p.s.fail("read release", err)
}

// Releases implements state.ReleaseHistory.
func (s *Store) Releases(ctx context.Context, product string) ([]state.ReleaseNote, error) {
	q, args := "SELECT product, version, target, published_ms, revoked_ms FROM release_history", []any{}
	if product != "" {
		q, args = q+" WHERE product = ?", append(args, product)
	}
	rows, err := s.r.QueryContext(ctx, s.d.rebind(q+" ORDER BY product, published_ms, version"), args...)
	if err != nil {
		return nil, s.fail("read releases", err)
	}
	defer rows.Close()
	var out []state.ReleaseNote
	for rows.Next() {
		var n state.ReleaseNote
		var pub, rev int64
		if err := rows.Scan(&n.Product, &n.Version, &n.Target, &pub, &rev); err != nil {
			return nil, s.fail("read releases", err)
		}
		n.Published, n.Revoked = fromMS(pub), fromMS(rev)
		out = append(out, n)
	}
	return out, s.fail("read releases", rows.Err())
}

// CommitTimes implements state.CommitLog. A device's clock may be wrong:
// the time used is the earlier of the event's and its arrival.
func (s *Store) CommitTimes(ctx context.Context, product string) ([]state.CommitTime, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind(`SELECT e.device_id, d.site, e.version,
		MIN(CASE WHEN e.time_unix_ms < e.received_unix_ms THEN e.time_unix_ms ELSE e.received_unix_ms END)
		FROM device_events e JOIN devices d ON d.id = e.device_id
		WHERE e.state = 'committed' AND d.product = ?
		GROUP BY e.device_id, d.site, e.version ORDER BY e.device_id, e.version`), product)
	if err != nil {
		return nil, s.fail("read commit times", err)
	}
	defer rows.Close()
	var out []state.CommitTime
	for rows.Next() {
		var c state.CommitTime
		var at int64
		if err := rows.Scan(&c.Device, &c.Site, &c.Version, &at); err != nil {
			return nil, s.fail("read commit times", err)
		}
		c.At = fromMS(at)
		out = append(out, c)
	}
	return out, s.fail("read commit times", rows.Err())
}
