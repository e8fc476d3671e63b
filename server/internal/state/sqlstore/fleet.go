package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/state"
)

func joinList(l []string) string { return strings.Join(l, "\n") }

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// bumpEpoch marks cached fleet state stale on every replica.
func (s *Store) bumpEpoch(ctx context.Context, q querier) error {
	_, err := q.ExecContext(ctx, "UPDATE fleet_epoch SET epoch = epoch + 1 WHERE id = 1")
	return s.fail("bump fleet epoch", err)
}

// inTx runs fn in a write transaction and bumps the fleet epoch with it.
func (s *Store) inTx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail(op, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := s.bumpEpoch(ctx, tx); err != nil {
		return err
	}
	return s.fail(op, tx.Commit())
}

// FleetEpoch implements state.FleetStore.
func (s *Store) FleetEpoch(ctx context.Context) (int64, error) {
	var e int64
	return e, s.fail("read fleet epoch", s.r.QueryRowContext(ctx, "SELECT epoch FROM fleet_epoch WHERE id = 1").Scan(&e))
}

// PutSite implements state.FleetStore.
func (s *Store) PutSite(ctx context.Context, st state.Site) error {
	return s.inTx(ctx, "put site", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.d.rebind(`INSERT INTO sites (name, time_zone, windows, care_areas, site_cap, care_area_cap, auto_approve, created_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET time_zone = excluded.time_zone, windows = excluded.windows,
			care_areas = excluded.care_areas, site_cap = excluded.site_cap, care_area_cap = excluded.care_area_cap, auto_approve = excluded.auto_approve`),
			st.Name, st.TimeZone, joinList(st.Windows), joinList(st.CareAreas), st.SiteCap, st.CareAreaCap, joinList(st.AutoApprove), ms(s.now()))
		return s.fail("put site", err)
	})
}

// Sites implements state.FleetStore.
func (s *Store) Sites(ctx context.Context) ([]state.Site, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT name, time_zone, windows, care_areas, site_cap, care_area_cap, auto_approve, created_ms FROM sites ORDER BY name")
	if err != nil {
		return nil, s.fail("list sites", err)
	}
	defer rows.Close()
	var out []state.Site
	for rows.Next() {
		var st state.Site
		var w, ca, aa string
		var created int64
		if err := rows.Scan(&st.Name, &st.TimeZone, &w, &ca, &st.SiteCap, &st.CareAreaCap, &aa, &created); err != nil {
			return nil, s.fail("list sites", err)
		}
		st.Windows, st.CareAreas, st.AutoApprove, st.Created = splitList(w), splitList(ca), splitList(aa), fromMS(created)
		out = append(out, st)
	}
	return out, s.fail("list sites", rows.Err())
}

const deviceColumns = "id, udi_di, product, hardware, site, care_area, tags, public_key, installed, decommissioned, last_seen_ms, created_ms, last_checkin_ms"

func scanDevice(sc scanner) (state.Device, error) {
	var d state.Device
	var tags string
	var dec int
	var seen, created, checkin int64
	err := sc.Scan(&d.ID, &d.UDIDI, &d.Product, &d.Hardware, &d.Site, &d.CareArea, &tags, &d.PublicKey, &d.Installed, &dec, &seen, &created, &checkin)
	d.Tags, d.Decommissioned, d.LastSeen, d.Created = splitList(tags), dec != 0, fromMS(seen), fromMS(created)
	if checkin > 0 {
		d.LastCheckIn = fromMS(checkin)
	}
	return d, err
}

// AddDevices implements state.FleetStore.
func (s *Store) AddDevices(ctx context.Context, ds []state.Device) error {
	return s.inTx(ctx, "add devices", func(tx *sql.Tx) error {
		sites := map[string]bool{}
		rows, err := tx.QueryContext(ctx, "SELECT name FROM sites")
		if err != nil {
			return s.fail("add devices", err)
		}
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				rows.Close()
				return s.fail("add devices", err)
			}
			sites[name] = true
		}
		rows.Close()
		for _, d := range ds {
			if !sites[d.Site] {
				return apperr.New(apperr.Invalid, "device %s: site %q does not exist", d.ID, d.Site)
			}
		}
		created := ms(s.now())
		for start := 0; start < len(ds); start += insertBatchRows {
			batch := ds[start:min(start+insertBatchRows, len(ds))]
			if err := s.refuseRegistered(ctx, tx, batch); err != nil {
				return err
			}
			var q strings.Builder
			q.WriteString("INSERT INTO devices (" + deviceColumns + ") VALUES ")
			args := make([]any, 0, len(batch)*13)
			for i, d := range batch {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
				args = append(args, d.ID, d.UDIDI, d.Product, d.Hardware, d.Site, d.CareArea, joinList(d.Tags), d.PublicKey, d.Installed, 0, 0, created, 0)
			}
			q.WriteString(" ON CONFLICT (id) DO NOTHING")
			res, err := tx.ExecContext(ctx, s.d.rebind(q.String()), args...)
			if err != nil {
				return s.fail("add devices", err)
			}
			if n, _ := res.RowsAffected(); int(n) < len(batch) {
				// Listed twice, or registered by a concurrent import.
				return apperr.New(apperr.Conflict, "a device of this import is listed twice or was registered meanwhile").WithCode(api.CodeDeviceExists)
			}
		}
		return nil
	})
}

// insertBatchRows is devices per multi-row INSERT (13 parameters each,
// well under both databases' parameter limits).
const insertBatchRows = 500

// refuseRegistered names the first device of batch that is registered
// already: the import adds nothing.
func (s *Store) refuseRegistered(ctx context.Context, tx *sql.Tx, batch []state.Device) error {
	args := make([]any, len(batch))
	for i, d := range batch {
		args[i] = d.ID
	}
	q := "SELECT id FROM devices WHERE id IN (?" + strings.Repeat(", ?", len(batch)-1) + ") ORDER BY id LIMIT 1"
	var id string
	err := tx.QueryRowContext(ctx, s.d.rebind(q), args...).Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return s.fail("add devices", err)
	}
	return apperr.New(apperr.Conflict, "device %s is already registered", id).WithCode(api.CodeDeviceExists)
}

// Device implements state.FleetStore.
func (s *Store) Device(ctx context.Context, id string) (state.Device, error) {
	d, err := scanDevice(s.r.QueryRowContext(ctx, s.d.rebind("SELECT "+deviceColumns+" FROM devices WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, state.NotFound("device " + id)
	}
	return d, s.fail("read device", err)
}

// DevicesOf implements state.FleetStore.
func (s *Store) DevicesOf(ctx context.Context, product string) ([]state.Device, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT "+deviceColumns+" FROM devices WHERE product = ? ORDER BY id"), product)
	if err != nil {
		return nil, s.fail("list devices", err)
	}
	defer rows.Close()
	var out []state.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, s.fail("list devices", err)
		}
		out = append(out, d)
	}
	return out, s.fail("list devices", rows.Err())
}

func (s *Store) execOne(ctx context.Context, op, what, q string, args ...any) error {
	return s.inTx(ctx, op, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.rebind(q), args...)
		if err != nil {
			return s.fail(op, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return state.NotFound(what)
		}
		return nil
	})
}

// Decommission implements state.FleetStore.
func (s *Store) Decommission(ctx context.Context, id string) error {
	return s.execOne(ctx, "decommission", "device "+id, "UPDATE devices SET decommissioned = 1, public_key = '' WHERE id = ?", id)
}

// TouchDevices implements state.FleetStore: one transaction for a batch of
// check-ins. It does not bump the fleet epoch: check-ins are the hot path.
func (s *Store) TouchDevices(ctx context.Context, ts []state.Touch) error {
	if len(ts) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("touch devices", err)
	}
	defer tx.Rollback()
	// A check-in signed earlier than the newest one recorded (a replay)
	// changes nothing.
	q := s.d.rebind("UPDATE devices SET installed = ?, last_seen_ms = ?, last_checkin_ms = ? WHERE id = ? AND last_checkin_ms < ?")
	for _, t := range ts {
		if _, err := tx.ExecContext(ctx, q, t.Installed, ms(t.Seen), ms(t.SignedAt), t.DeviceID, ms(t.SignedAt)); err != nil {
			return s.fail("touch devices", err)
		}
	}
	return s.fail("touch devices", tx.Commit())
}

// UseNonce implements state.FleetStore.
func (s *Store) UseNonce(ctx context.Context, deviceID, nonce string, now, expires time.Time) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("use nonce", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, s.d.rebind("DELETE FROM device_nonces WHERE device_id = ? AND expires_ms < ?"), deviceID, ms(now)); err != nil {
		return s.fail("use nonce", err)
	}
	res, err := tx.ExecContext(ctx, s.d.rebind("INSERT INTO device_nonces (device_id, nonce, expires_ms) VALUES (?, ?, ?) ON CONFLICT (device_id, nonce) DO NOTHING"), deviceID, nonce, ms(expires))
	if err != nil {
		return s.fail("use nonce", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.Unauthorized, "request nonce was used before (replay)").WithCode(api.CodeReplayedRequest)
	}
	return s.fail("use nonce", tx.Commit())
}

const rolloutColumns = "id, product, version, target, plan, state, current_wave, wave_opened_ms, halt_reason, created_ms, revision"

func scanRollout(sc scanner) (state.Rollout, error) {
	var r state.Rollout
	var plan string
	var opened, created int64
	err := sc.Scan(&r.ID, &r.Product, &r.Version, &r.Target, &plan, &r.State, &r.CurrentWave, &opened, &r.HaltReason, &created, &r.Revision)
	r.Plan, r.WaveOpened, r.Created = []byte(plan), fromMS(opened), fromMS(created)
	return r, err
}

// CreateRollout implements state.FleetStore.
func (s *Store) CreateRollout(ctx context.Context, r state.Rollout) error {
	return s.inTx(ctx, "create rollout", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.d.rebind(`INSERT INTO rollouts (`+rolloutColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`),
			r.ID, r.Product, r.Version, r.Target, string(r.Plan), r.State, r.CurrentWave, ms(r.WaveOpened), r.HaltReason, ms(r.Created))
		return s.fail("create rollout", err)
	})
}

// Rollout implements state.FleetStore.
func (s *Store) Rollout(ctx context.Context, id string) (state.Rollout, error) {
	r, err := scanRollout(s.r.QueryRowContext(ctx, s.d.rebind("SELECT "+rolloutColumns+" FROM rollouts WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, state.NotFound("rollout " + id)
	}
	return r, s.fail("read rollout", err)
}

// Rollouts implements state.FleetStore.
func (s *Store) Rollouts(ctx context.Context, product string) ([]state.Rollout, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT "+rolloutColumns+" FROM rollouts WHERE ? = '' OR product = ? ORDER BY created_ms DESC, id"), product, product)
	if err != nil {
		return nil, s.fail("list rollouts", err)
	}
	defer rows.Close()
	var out []state.Rollout
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, s.fail("list rollouts", err)
		}
		out = append(out, r)
	}
	return out, s.fail("list rollouts", rows.Err())
}

// UpdateRollout implements state.FleetStore.
func (s *Store) UpdateRollout(ctx context.Context, r state.Rollout) (state.Rollout, error) {
	err := s.inTx(ctx, "update rollout", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.rebind(`UPDATE rollouts SET state = ?, current_wave = ?, wave_opened_ms = ?, halt_reason = ?, revision = revision + 1
			WHERE id = ? AND revision = ?`), r.State, r.CurrentWave, ms(r.WaveOpened), r.HaltReason, r.ID, r.Revision)
		if err != nil {
			return s.fail("update rollout", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return apperr.New(apperr.Conflict, "rollout %s changed meanwhile; re-read it", r.ID).WithCode(api.CodeStaleRollout)
		}
		return nil
	})
	if err == nil {
		r.Revision++
	}
	return r, err
}

// PutApproval implements state.FleetStore.
func (s *Store) PutApproval(ctx context.Context, a state.Approval) error {
	return s.inTx(ctx, "put approval", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.d.rebind(`INSERT INTO approvals (rollout_id, wave, site, approved_by, comment, not_before_ms, at_ms, revoked)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rollout_id, wave, site) DO UPDATE SET approved_by = excluded.approved_by,
			comment = excluded.comment, not_before_ms = excluded.not_before_ms, at_ms = excluded.at_ms, revoked = excluded.revoked`),
			a.RolloutID, a.Wave, a.Site, a.By, a.Comment, ms(a.NotBefore), ms(a.At), b2i(a.Revoked))
		return s.fail("put approval", err)
	})
}

// Approvals implements state.FleetStore.
func (s *Store) Approvals(ctx context.Context, rolloutID string) ([]state.Approval, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind(`SELECT rollout_id, wave, site, approved_by, comment, not_before_ms, at_ms, revoked
		FROM approvals WHERE rollout_id = ? ORDER BY wave, site`), rolloutID)
	if err != nil {
		return nil, s.fail("list approvals", err)
	}
	defer rows.Close()
	var out []state.Approval
	for rows.Next() {
		var a state.Approval
		var nb, at int64
		var rev int
		if err := rows.Scan(&a.RolloutID, &a.Wave, &a.Site, &a.By, &a.Comment, &nb, &at, &rev); err != nil {
			return nil, s.fail("list approvals", err)
		}
		a.NotBefore, a.At, a.Revoked = fromMS(nb), fromMS(at), rev != 0
		out = append(out, a)
	}
	return out, s.fail("list approvals", rows.Err())
}

// PutDeferral implements state.FleetStore.
func (s *Store) PutDeferral(ctx context.Context, d state.Deferral) error {
	return s.inTx(ctx, "put deferral", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.d.rebind(`INSERT INTO deferrals (rollout_id, wave, site, reason, until_ms) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (rollout_id, wave, site) DO UPDATE SET reason = excluded.reason, until_ms = excluded.until_ms`),
			d.RolloutID, d.Wave, d.Site, d.Reason, ms(d.Until))
		return s.fail("put deferral", err)
	})
}

// Deferrals implements state.FleetStore.
func (s *Store) Deferrals(ctx context.Context, rolloutID string) ([]state.Deferral, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT rollout_id, wave, site, reason, until_ms FROM deferrals WHERE rollout_id = ? ORDER BY wave, site"), rolloutID)
	if err != nil {
		return nil, s.fail("list deferrals", err)
	}
	defer rows.Close()
	var out []state.Deferral
	for rows.Next() {
		var d state.Deferral
		var until int64
		if err := rows.Scan(&d.RolloutID, &d.Wave, &d.Site, &d.Reason, &until); err != nil {
			return nil, s.fail("list deferrals", err)
		}
		d.Until = fromMS(until)
		out = append(out, d)
	}
	return out, s.fail("list deferrals", rows.Err())
}

// SetProgress implements state.FleetStore.
func (s *Store) SetProgress(ctx context.Context, p state.Progress, onlyIfNew bool) (bool, error) {
	q := `INSERT INTO rollout_devices (rollout_id, device_id, wave, state, updated_ms, changed_ms) VALUES (?, ?, ?, ?, ?, ` + s.d.nowMS + `)
		ON CONFLICT (rollout_id, device_id) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms, changed_ms = excluded.changed_ms`
	if onlyIfNew {
		q = `INSERT INTO rollout_devices (rollout_id, device_id, wave, state, updated_ms, changed_ms) VALUES (?, ?, ?, ?, ?, ` + s.d.nowMS + `)
			ON CONFLICT (rollout_id, device_id) DO NOTHING`
	}
	// Progress does not move the fleet epoch: replicas re-read changed
	// progress on their own schedule (fleet.EpochCheckInterval).
	res, err := s.w.ExecContext(ctx, s.d.rebind(q), p.RolloutID, p.DeviceID, p.Wave, string(p.State), ms(p.Updated))
	if err != nil {
		return false, s.fail("set progress", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// ProgressChanged implements state.ProgressStore.
func (s *Store) ProgressChanged(ctx context.Context, rolloutID string, sinceMS int64) ([]state.Progress, int64, error) {
	var now int64
	if err := s.r.QueryRowContext(ctx, "SELECT "+s.d.nowMS).Scan(&now); err != nil {
		return nil, 0, s.fail("read the database clock", err)
	}
	out, err := s.progressWhere(ctx, "rollout_id = ? AND changed_ms >= ?", rolloutID, sinceMS)
	return out, now, err
}

// finalStates are the install states that end an assignment; every other
// state holds an install slot under the caps.
var finalStates = "'" + string(api.StateCommitted) + "', '" + string(api.StateRolledBack) + "', '" + string(api.StateFailed) + "'"

// claimLockKey namespaces the per-(rollout, site) PostgreSQL advisory locks
// of ClaimAssignment ("VIGC").
const claimLockKey = 0x56494743

// MaxClaimGroup bounds the claims one group commit decides.
const MaxClaimGroup = 64

type claimReq struct {
	p   state.Progress
	c   state.Claim
	res state.ClaimResult
	err error
}

// ClaimAssignment implements state.ProgressStore. Claims that arrive while
// another commit runs are decided together in the next transaction (a
// group commit), one after the other, each seeing the ones before it. On
// PostgreSQL the transaction takes an advisory lock per (rollout, site),
// in sorted order (so two replicas' groups cannot deadlock), and claims at
// one site run one at a time on every replica while other sites proceed;
// on SQLite every write transaction holds the database's write lock.
func (s *Store) ClaimAssignment(ctx context.Context, p state.Progress, c state.Claim) (state.ClaimResult, error) {
	req := &claimReq{p: p, c: c}
	s.claims.run(ctx, req, MaxClaimGroup, s.claimTx, func(r *claimReq, err error) { r.err = err })
	return req.res, req.err
}

func (s *Store) claimTx(ctx context.Context, batch []*claimReq) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("begin claim", err)
	}
	defer tx.Rollback()
	if s.d.numbered {
		keys := make([]string, 0, len(batch))
		for _, r := range batch {
			keys = append(keys, r.p.RolloutID+"\n"+r.c.Site)
		}
		slices.Sort(keys)
		for _, k := range slices.Compact(keys) {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock("+strconv.Itoa(claimLockKey)+", hashtext($1))", k); err != nil {
				return s.fail("lock install slots", err)
			}
		}
	}
	for _, r := range batch {
		if r.res, err = s.claimIn(ctx, tx, r.p, r.c); err != nil {
			return err
		}
	}
	return s.fail("commit claim", tx.Commit())
}

// claimIn decides one claim inside a transaction that holds its lock.
func (s *Store) claimIn(ctx context.Context, tx *sql.Tx, p state.Progress, c state.Claim) (state.ClaimResult, error) {
	var exists int
	err := tx.QueryRowContext(ctx, s.d.rebind("SELECT COUNT(*) FROM rollout_devices WHERE rollout_id = ? AND device_id = ?"), p.RolloutID, p.DeviceID).Scan(&exists)
	if err != nil {
		return 0, s.fail("claim", err)
	}
	if exists > 0 {
		return state.AlreadyAssigned, nil
	}
	if c.SiteCap > 0 || (c.AreaCap > 0 && c.CareArea != "") {
		var atSite, inArea int
		err = tx.QueryRowContext(ctx, s.d.rebind(`SELECT COUNT(*), COALESCE(SUM(CASE WHEN care_area = ? THEN 1 ELSE 0 END), 0)
			FROM rollout_devices WHERE rollout_id = ? AND site = ? AND state NOT IN (`+finalStates+`)`), c.CareArea, p.RolloutID, c.Site).Scan(&atSite, &inArea)
		if err != nil {
			return 0, s.fail("count install slots", err)
		}
		if c.SiteCap > 0 && atSite >= c.SiteCap {
			return state.SiteFull, nil
		}
		if c.AreaCap > 0 && c.CareArea != "" && inArea >= c.AreaCap {
			return state.CareAreaFull, nil
		}
	}
	_, err = tx.ExecContext(ctx, s.d.rebind(`INSERT INTO rollout_devices (rollout_id, device_id, wave, state, updated_ms, site, care_area, changed_ms) VALUES (?, ?, ?, ?, ?, ?, ?, `+s.d.nowMS+`)`),
		p.RolloutID, p.DeviceID, p.Wave, string(p.State), ms(p.Updated), c.Site, c.CareArea)
	if err != nil {
		return 0, s.fail("claim", err)
	}
	return state.Claimed, nil
}

// Progress implements state.FleetStore.
func (s *Store) Progress(ctx context.Context, rolloutID string) ([]state.Progress, error) {
	return s.progressWhere(ctx, "rollout_id = ?", rolloutID)
}

func (s *Store) progressWhere(ctx context.Context, where string, args ...any) ([]state.Progress, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT rollout_id, device_id, wave, state, updated_ms FROM rollout_devices WHERE "+where+" ORDER BY device_id"), args...)
	if err != nil {
		return nil, s.fail("list progress", err)
	}
	defer rows.Close()
	var out []state.Progress
	for rows.Next() {
		var p state.Progress
		var upd int64
		if err := rows.Scan(&p.RolloutID, &p.DeviceID, &p.Wave, &p.State, &upd); err != nil {
			return nil, s.fail("list progress", err)
		}
		p.Updated = fromMS(upd)
		out = append(out, p)
	}
	return out, s.fail("list progress", rows.Err())
}

const tokenColumns = "id, secret_hash, name, role, sites, expires_ms, revoked, created_ms"

func scanToken(sc scanner) (state.Token, error) {
	var t state.Token
	var sites string
	var exp, created int64
	var rev int
	err := sc.Scan(&t.ID, &t.SecretHash, &t.Name, &t.Role, &sites, &exp, &rev, &created)
	t.Sites, t.Expires, t.Revoked, t.Created = splitList(sites), fromMS(exp), rev != 0, fromMS(created)
	return t, err
}

// CreateToken implements state.TokenStore.
func (s *Store) CreateToken(ctx context.Context, t state.Token) error {
	_, err := s.w.ExecContext(ctx, s.d.rebind(`INSERT INTO tokens (`+tokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, 0, ?)`),
		t.ID, t.SecretHash, t.Name, t.Role, joinList(t.Sites), ms(t.Expires), ms(s.now()))
	return s.fail("create token", err)
}

// Token implements state.TokenStore.
func (s *Store) Token(ctx context.Context, id string) (state.Token, error) {
	t, err := scanToken(s.r.QueryRowContext(ctx, s.d.rebind("SELECT "+tokenColumns+" FROM tokens WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return t, state.NotFound("token " + id)
	}
	return t, s.fail("read token", err)
}

// Tokens implements state.TokenStore.
func (s *Store) Tokens(ctx context.Context) ([]state.Token, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+tokenColumns+" FROM tokens ORDER BY created_ms, id")
	if err != nil {
		return nil, s.fail("list tokens", err)
	}
	defer rows.Close()
	var out []state.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, s.fail("list tokens", err)
		}
		out = append(out, t)
	}
	return out, s.fail("list tokens", rows.Err())
}

// RevokeToken implements state.TokenStore.
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	res, err := s.w.ExecContext(ctx, s.d.rebind("UPDATE tokens SET revoked = 1 WHERE id = ?"), id)
	if err != nil {
		return s.fail("revoke token", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return state.NotFound("token " + id)
	}
	return nil
}

// DeviceProgress implements state.FleetStore.
func (s *Store) DeviceProgress(ctx context.Context, rolloutID, deviceID string) (state.Progress, error) {
	var p state.Progress
	var upd int64
	err := s.r.QueryRowContext(ctx, s.d.rebind("SELECT rollout_id, device_id, wave, state, updated_ms FROM rollout_devices WHERE rollout_id = ? AND device_id = ?"),
		rolloutID, deviceID).Scan(&p.RolloutID, &p.DeviceID, &p.Wave, &p.State, &upd)
	if errors.Is(err, sql.ErrNoRows) {
		return p, state.NotFound("progress of " + deviceID + " in " + rolloutID)
	}
	p.Updated = fromMS(upd)
	return p, s.fail("read progress", err)
}

// InstalledCounts implements state.RegistryStore.
func (s *Store) InstalledCounts(ctx context.Context, product string) ([]state.InstalledCount, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind(`SELECT site, installed, COUNT(*) FROM devices WHERE product = ? AND decommissioned = ?
		GROUP BY site, installed ORDER BY site, installed`), product, 0)
	if err != nil {
		return nil, s.fail("count devices", err)
	}
	defer rows.Close()
	var out []state.InstalledCount
	for rows.Next() {
		var c state.InstalledCount
		if err := rows.Scan(&c.Site, &c.Version, &c.Count); err != nil {
			return nil, s.fail("count devices", err)
		}
		out = append(out, c)
	}
	return out, s.fail("count devices", rows.Err())
}

// MaxDevicePage bounds one page of devices.
const MaxDevicePage = 1000

// DevicePage implements state.RegistryStore.
func (s *Store) DevicePage(ctx context.Context, q state.DeviceQuery) ([]state.Device, int, error) {
	where := " WHERE 1 = 1"
	var args []any
	if q.Sites != nil {
		if len(q.Sites) == 0 {
			return nil, 0, nil
		}
		marks := make([]string, len(q.Sites))
		for i, site := range q.Sites {
			marks[i], args = "?", append(args, site)
		}
		where += " AND site IN (" + strings.Join(marks, ", ") + ")"
	}
	for _, c := range []struct{ col, v string }{{"care_area", q.CareArea}, {"product", q.Product}, {"installed", q.Version}} {
		if c.v != "" {
			where += " AND " + c.col + " = ?"
			args = append(args, c.v)
		}
	}
	if q.Prefix != "" {
		where += " AND substr(id, 1, ?) = ?"
		args = append(args, len(q.Prefix), q.Prefix)
	}
	if q.InService {
		where += " AND decommissioned = 0"
	}
	var total int
	if err := s.r.QueryRowContext(ctx, s.d.rebind("SELECT COUNT(*) FROM devices"+where), args...).Scan(&total); err != nil {
		return nil, 0, s.fail("count devices", err)
	}
	limit := q.Limit
	if limit <= 0 || limit > MaxDevicePage {
		limit = MaxDevicePage
	}
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT "+deviceColumns+" FROM devices"+where+" ORDER BY site, id LIMIT ? OFFSET ?"), append(args, limit, max(q.Offset, 0))...)
	if err != nil {
		return nil, 0, s.fail("list devices", err)
	}
	defer rows.Close()
	var out []state.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, 0, s.fail("list devices", err)
		}
		out = append(out, d)
	}
	return out, total, s.fail("list devices", rows.Err())
}

// LatestEvents implements state.EventStore.
func (s *Store) LatestEvents(ctx context.Context, ids []string) (map[string]state.DeviceEvent, error) {
	out := map[string]state.DeviceEvent{}
	for i := 0; i < len(ids); i += keyChunk {
		chunk := ids[i:min(i+keyChunk, len(ids))]
		marks := make([]string, len(chunk))
		args := make([]any, len(chunk))
		for j, id := range chunk {
			marks[j], args[j] = "?", id
		}
		rows, err := s.r.QueryContext(ctx, s.d.rebind(`SELECT id, device_id, target, version, state, reason, time_unix_ms, received_unix_ms FROM (
			SELECT e.*, ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY time_unix_ms DESC, id DESC) AS rn FROM device_events e
			WHERE device_id IN (`+strings.Join(marks, ", ")+`)) latest WHERE rn = 1`), args...)
		if err != nil {
			return nil, s.fail("latest events", err)
		}
		for rows.Next() {
			var e state.DeviceEvent
			var t, r int64
			if err := rows.Scan(&e.ID, &e.DeviceID, &e.Target, &e.Version, &e.State, &e.Reason, &t, &r); err != nil {
				rows.Close()
				return nil, s.fail("latest events", err)
			}
			e.Time, e.Received = time.UnixMilli(t).UTC(), time.UnixMilli(r).UTC()
			out[e.DeviceID] = e
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, s.fail("latest events", err)
		}
	}
	return out, nil
}
