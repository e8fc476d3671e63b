// Package sqlstore implements state.Store on SQL databases: SQLite through
// the pure-Go modernc.org/sqlite driver (the embedded default, no cgo) and
// PostgreSQL through pgx. One implementation serves both; the differences
// (placeholders, the publish lock, connection pools, migrations) live in a
// small dialect value.
//
// Concurrency:
//   - PostgreSQL: Publish takes pg_advisory_xact_lock inside its transaction,
//     so publishes from any number of replicas run one at a time.
//   - SQLite: writes go through one connection whose transactions begin
//     IMMEDIATE (the database's write lock) with a busy timeout, so writers in
//     this and other processes on the same file run one at a time; reads use
//     a separate pool and see the last committed state (WAL mode).
//
// Schema migrations are versioned SQL files (migrations/<dialect>), applied at
// Open by goose; on PostgreSQL under a session lock, so replicas starting
// together apply each migration once.
package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"modernc.org/sqlite"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Limits and defaults, with their units.
const (
	// SQLiteBusyTimeout is how long a writer waits for another writer's lock.
	SQLiteBusyTimeout = 10 * time.Second
	// SQLiteReadConns is the size of the SQLite read pool.
	SQLiteReadConns = 8
	// PostgresMaxConns caps each replica's PostgreSQL connections.
	PostgresMaxConns = 20
	// PostgresConnMaxIdle closes idle PostgreSQL connections after this long.
	PostgresConnMaxIdle = 5 * time.Minute
	// publishLockKey is the pg_advisory_xact_lock key of the publish lock
	// ("VIGL" in ASCII).
	publishLockKey = 0x5649474C
	// auditLockKey serializes audit appends ("VIGA").
	auditLockKey = 0x56494741
)

//go:embed migrations
var migrations embed.FS

// Backend names.
const (
	BackendSQLite   = "sqlite"
	BackendPostgres = "postgres"
)

type dialect struct {
	name      string
	goose     goose.Dialect
	lockSQL   string // run first in every Publish transaction
	nowMS     string // the database's clock in Unix milliseconds, as an SQL expression
	numbered  bool   // $1 placeholders instead of ?
	migration string // folder under migrations/
}

var (
	sqliteDialect = dialect{name: BackendSQLite, goose: goose.DialectSQLite3, migration: "sqlite",
		nowMS: "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"}
	postgresDialect = dialect{name: BackendPostgres, goose: goose.DialectPostgres, numbered: true, migration: "postgres",
		lockSQL: "SELECT pg_advisory_xact_lock(" + strconv.Itoa(publishLockKey) + ")",
		nowMS:   "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"}
)

// rebind turns ? placeholders into $1, $2, … for PostgreSQL. Queries in this
// package never contain a literal question mark.
func (d dialect) rebind(q string) string {
	if !d.numbered {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Store is a state.Store on SQLite or PostgreSQL.
type Store struct {
	d      dialect
	r      *sql.DB // reads
	w      *sql.DB // writes and Publish (the same pool as r on PostgreSQL)
	now    func() time.Time
	ingest group[ingestReq]
	claims group[claimReq]
}

var _ state.Store = (*Store)(nil)

// Kind of a DSN, decided by its form.
func backendOf(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return BackendPostgres
	}
	return BackendSQLite
}

// SQLitePath returns the database file a SQLite DSN names: "sqlite://PATH",
// "sqlite:PATH", "file:PATH" or a bare path.
func SQLitePath(dsn string) (string, error) {
	p := dsn
	for _, prefix := range []string{"sqlite://", "sqlite:", "file:"} {
		if strings.HasPrefix(p, prefix) {
			p = strings.TrimPrefix(p, prefix)
			break
		}
	}
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return "", fmt.Errorf("SQLite DSN %q: parameters are not accepted; Vigil sets its own", dsn)
	}
	if p == "" {
		return "", fmt.Errorf("SQLite DSN %q names no file", dsn)
	}
	if strings.Contains(p, "://") {
		return "", fmt.Errorf("DSN %q: unknown scheme (use postgres://… or a SQLite file path)", dsn)
	}
	return filepath.Abs(p)
}

// Validate checks a DSN's form without connecting.
func Validate(dsn string) error {
	if backendOf(dsn) == BackendPostgres {
		if _, err := pgx.ParseConfig(dsn); err != nil {
			return fmt.Errorf("malformed PostgreSQL URL: %s", pgErrText(err))
		}
		return nil
	}
	_, err := SQLitePath(dsn)
	return err
}

// pgErrText strips the DSN (which may hold a password) from pgx's parse errors.
func pgErrText(err error) string {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		cause := pe.Unwrap()
		var ue *url.Error
		if errors.As(cause, &ue) {
			cause = ue.Err // url.Error repeats the whole URL
		}
		if cause == nil {
			return pe.Error() // pgx redacts the password in its own text
		}
		return cause.Error()
	}
	return err.Error()
}

// Open connects to the database a DSN names (postgres:// → PostgreSQL,
// anything else → a SQLite file), applies pending migrations and checks it
// answers, all within ctx.
func Open(ctx context.Context, dsn string) (*Store, error) {
	if err := Validate(dsn); err != nil {
		return nil, err
	}
	var s *Store
	var err error
	if backendOf(dsn) == BackendPostgres {
		s, err = openPostgres(ctx, dsn)
	} else {
		s, err = openSQLite(ctx, dsn)
	}
	if err != nil {
		return nil, err
	}
	s.now = time.Now
	return s, nil
}

func openPostgres(ctx context.Context, dsn string) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL: %s", pgErrText(err))
	}
	db.SetMaxOpenConns(PostgresMaxConns)
	db.SetMaxIdleConns(PostgresMaxConns)
	db.SetConnMaxIdleTime(PostgresConnMaxIdle)
	if err := pingUntil(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("PostgreSQL %s %s", redact(dsn), err)
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := migrate(ctx, postgresDialect, db, goose.WithSessionLocker(locker)); err != nil {
		db.Close()
		return nil, err
	}
	return &Store{d: postgresDialect, r: db, w: db}, nil
}

// Start-up retry, with its units: a database that is starting (a
// container, a failover) is tried again with doubling waits until the
// start-up timeout ends; one that answers "no" is not.
const (
	pingRetryFirst = 250 * time.Millisecond
	pingRetryMax   = 5 * time.Second
)

// pingUntil pings until the database answers or ctx ends. A database that
// does not exist, or refuses the credentials, fails at once with what is
// wrong; anything else (refused connection, timeout, the server starting
// up) is retried, and the last error is reported when ctx ends.
func pingUntil(ctx context.Context, db *sql.DB) error {
	wait := pingRetryFirst
	for {
		err := db.PingContext(ctx)
		if err == nil {
			return nil
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			switch pe.Code {
			case "3D000":
				return fmt.Errorf("answers, but the database does not exist: create it (CREATE DATABASE …) or fix database_url (%s)", pe.Message)
			case "28P01", "28000":
				return fmt.Errorf("refuses the credentials in database_url (%s)", pe.Message)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("is not reachable within the start-up timeout (startup_timeout): %s", pgErrText(err))
		case <-time.After(wait):
		}
		wait = min(2*wait, pingRetryMax)
	}
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func sqliteDSN(path string, writer bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", SQLiteBusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	// FULL: a committed transaction survives power loss, not just a crash.
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	if writer {
		q.Set("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode()
}

// SQLiteFilePerm is the SQLite file's mode.
const SQLiteFilePerm = 0o600

func openSQLite(ctx context.Context, dsn string) (*Store, error) {
	path, err := SQLitePath(dsn)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("SQLite file %q: directory %q does not exist", path, filepath.Dir(path))
	}
	// The database holds token hashes and the audit chain: owner only.
	// SQLite gives its -wal and -shm files the database file's mode.
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, SQLiteFilePerm); err == nil {
		f.Close()
		os.Chmod(path, SQLiteFilePerm)
	}
	w, err := sql.Open("sqlite", sqliteDSN(path, true))
	if err != nil {
		return nil, fmt.Errorf("SQLite file %q: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("SQLite file %q cannot be opened: %w", path, err)
	}
	// Migrations use their own handle: goose may hold a transaction and
	// query outside it, which one connection cannot do.
	mdb, err := sql.Open("sqlite", sqliteDSN(path, true))
	if err == nil {
		err = migrate(ctx, sqliteDialect, mdb)
		mdb.Close()
	}
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("SQLite file %q: %w", path, err)
	}
	r, err := sql.Open("sqlite", sqliteDSN(path, false))
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(SQLiteReadConns)
	return &Store{d: sqliteDialect, r: r, w: w}, nil
}

func migrate(ctx context.Context, d dialect, db *sql.DB, opts ...goose.ProviderOption) error {
	fsys, err := fs.Sub(migrations, "migrations/"+d.migration)
	if err != nil {
		return err
	}
	opts = append(opts, goose.WithDisableGlobalRegistry(true))
	p, err := goose.NewProvider(d.goose, db, fsys, opts...)
	if err != nil {
		return fmt.Errorf("schema migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("applying schema migrations: %w", err)
	}
	return nil
}

// SchemaVersion reports the newest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.r.QueryRowContext(ctx, "SELECT COALESCE(MAX(version_id), 0) FROM goose_db_version WHERE is_applied").Scan(&v)
	return v, s.fail("read schema version", err)
}

// Backend implements state.Store.
func (s *Store) Backend() string { return s.d.name }

// Ping implements state.Store.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.r.PingContext(ctx); err != nil {
		return apperr.Wrap(err, apperr.Unavailable, "database is not reachable")
	}
	var one int
	return s.fail("ping", s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one))
}

// Close implements state.Store.
func (s *Store) Close() error {
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

// SetClock replaces the store's clock (tests).
func (s *Store) SetClock(now func() time.Time) { s.now = now }

// querier is what reads need: a pool or a transaction.
type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

const roleColumns = "role, version, sha256, length, expires_unix_ms, updated_unix_ms"

type scanner interface{ Scan(dest ...any) error }

func scanRole(sc scanner) (state.RoleVersion, error) {
	var v state.RoleVersion
	var exp, upd int64
	if err := sc.Scan(&v.Role, &v.Version, &v.SHA256, &v.Length, &exp, &upd); err != nil {
		return v, err
	}
	v.Expires = time.UnixMilli(exp).UTC()
	v.UpdatedAt = time.UnixMilli(upd).UTC()
	return v, nil
}

func (s *Store) roleVersion(ctx context.Context, q querier, role string) (state.RoleVersion, error) {
	v, err := scanRole(q.QueryRowContext(ctx, s.d.rebind("SELECT "+roleColumns+" FROM tuf_role_versions WHERE role = ?"), role))
	if errors.Is(err, sql.ErrNoRows) {
		return v, state.NotFound("role " + role)
	}
	return v, s.fail("read role version", err)
}

// RoleVersion implements state.Store.
func (s *Store) RoleVersion(ctx context.Context, role string) (state.RoleVersion, error) {
	return s.roleVersion(ctx, s.r, role)
}

// RoleVersions implements state.Store.
func (s *Store) RoleVersions(ctx context.Context) ([]state.RoleVersion, error) {
	return s.roleVersions(ctx, s.r)
}

func (s *Store) roleVersions(ctx context.Context, q querier) ([]state.RoleVersion, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+roleColumns+" FROM tuf_role_versions ORDER BY role")
	if err != nil {
		return nil, s.fail("list role versions", err)
	}
	defer rows.Close()
	var out []state.RoleVersion
	for rows.Next() {
		v, err := scanRole(rows)
		if err != nil {
			return nil, s.fail("list role versions", err)
		}
		out = append(out, v)
	}
	return out, s.fail("list role versions", rows.Err())
}

// AddDeviceEvents implements state.Store.
func (s *Store) AddDeviceEvents(ctx context.Context, evs []state.DeviceEvent) (int, error) {
	n, _, err := s.IngestDeviceEvents(ctx, evs, nil)
	return n, err
}

// MaxIngestGroup bounds the event batches one group commit stores.
const MaxIngestGroup = 64

type ingestReq struct {
	evs   []state.DeviceEvent
	moves []state.ProgressMove
	added int
	moved []bool
	err   error
}

// IngestDeviceEvents implements state.Store: a device's batch of events
// and the progress they move, committed together, in a group commit with
// the batches of other devices that arrive meanwhile.
func (s *Store) IngestDeviceEvents(ctx context.Context, evs []state.DeviceEvent, moves []state.ProgressMove) (int, []bool, error) {
	if len(evs) == 0 && len(moves) == 0 {
		return 0, nil, nil
	}
	req := &ingestReq{evs: evs, moves: moves}
	s.ingest.run(ctx, req, MaxIngestGroup, s.ingestTx, func(r *ingestReq, err error) { r.err = err })
	return req.added, req.moved, req.err
}

func (s *Store) ingestTx(ctx context.Context, batch []*ingestReq) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("begin add events", err)
	}
	defer tx.Rollback()
	q := s.d.rebind(`INSERT INTO device_events (id, device_id, target, version, state, reason, time_unix_ms, received_unix_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`)
	mq := s.d.rebind(`UPDATE rollout_devices SET state = ?, updated_ms = ?, changed_ms = ` + s.d.nowMS + `
		WHERE rollout_id = ? AND device_id = ? AND state NOT IN (` + finalStates + `)`)
	now := s.now().UnixMilli()
	for _, r := range batch {
		r.added, r.moved = 0, make([]bool, len(r.moves))
		for _, e := range r.evs {
			res, err := tx.ExecContext(ctx, q, e.ID, e.DeviceID, e.Target, e.Version, string(e.State), e.Reason, e.Time.UnixMilli(), now)
			if err != nil {
				return s.fail("add event", err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				r.added++
			}
		}
		for i, m := range r.moves {
			res, err := tx.ExecContext(ctx, mq, string(m.State), ms(m.Updated), m.RolloutID, m.DeviceID)
			if err != nil {
				return s.fail("move progress", err)
			}
			n, _ := res.RowsAffected()
			r.moved[i] = n > 0
		}
	}
	return s.fail("commit events", tx.Commit())
}

// DeviceEvents implements state.Store.
func (s *Store) DeviceEvents(ctx context.Context, deviceID string, limit int) ([]state.DeviceEvent, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind(`SELECT id, device_id, target, version, state, reason, time_unix_ms, received_unix_ms
		FROM device_events WHERE device_id = ? ORDER BY time_unix_ms, id LIMIT ?`), deviceID, limit)
	if err != nil {
		return nil, s.fail("list events", err)
	}
	defer rows.Close()
	var out []state.DeviceEvent
	for rows.Next() {
		var e state.DeviceEvent
		var t, r int64
		if err := rows.Scan(&e.ID, &e.DeviceID, &e.Target, &e.Version, &e.State, &e.Reason, &t, &r); err != nil {
			return nil, s.fail("list events", err)
		}
		e.Time, e.Received = time.UnixMilli(t).UTC(), time.UnixMilli(r).UTC()
		out = append(out, e)
	}
	return out, s.fail("list events", rows.Err())
}

// AppendAudit implements state.Store.
func (s *Store) AppendAudit(ctx context.Context, e audit.Entry) (audit.Entry, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return e, s.fail("begin audit", err)
	}
	defer tx.Rollback()
	if s.d.name == BackendPostgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock("+strconv.Itoa(auditLockKey)+")"); err != nil {
			return e, s.fail("take audit lock", err)
		}
	}
	e.Seq, e.PrevHash = 1, audit.GenesisHash
	var lastSeq int64
	var lastHash string
	err = tx.QueryRowContext(ctx, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").Scan(&lastSeq, &lastHash)
	switch {
	case err == nil:
		e.Seq, e.PrevHash = lastSeq+1, lastHash
	case !errors.Is(err, sql.ErrNoRows):
		return e, s.fail("read audit head", err)
	}
	e.Time = e.Time.UTC().Truncate(time.Millisecond)
	if e.Details == nil {
		e.Details = []byte{}
	}
	e.Hash = e.ComputeHash()
	_, err = tx.ExecContext(ctx, s.d.rebind(`INSERT INTO audit_log (seq, time_unix_ms, actor, action, subject, details, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), e.Seq, e.Time.UnixMilli(), e.Actor, e.Action, e.Subject, string(e.Details), e.PrevHash, e.Hash)
	if err != nil {
		return e, s.fail("append audit", err)
	}
	return e, s.fail("commit audit", tx.Commit())
}

// AuditEntries implements state.Store.
func (s *Store) AuditEntries(ctx context.Context, afterSeq int64, since time.Time, limit int) ([]audit.Entry, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind(`SELECT seq, time_unix_ms, actor, action, subject, details, prev_hash, hash
		FROM audit_log WHERE seq > ? AND time_unix_ms >= ? ORDER BY seq LIMIT ?`), afterSeq, since.UnixMilli(), limit)
	if err != nil {
		return nil, s.fail("list audit", err)
	}
	defer rows.Close()
	var out []audit.Entry
	for rows.Next() {
		var e audit.Entry
		var t int64
		var details string
		if err := rows.Scan(&e.Seq, &t, &e.Actor, &e.Action, &e.Subject, &details, &e.PrevHash, &e.Hash); err != nil {
			return nil, s.fail("list audit", err)
		}
		e.Time = time.UnixMilli(t).UTC()
		if details != "" {
			e.Details = []byte(details)
		}
		out = append(out, e)
	}
	return out, s.fail("list audit", rows.Err())
}

// Publish implements state.Store.
func (s *Store) Publish(ctx context.Context, fn func(context.Context, state.PublishTx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("begin publish", err)
	}
	defer tx.Rollback() // no-op after Commit
	if s.d.lockSQL != "" {
		if _, err := tx.ExecContext(ctx, s.d.lockSQL); err != nil {
			return s.fail("take publish lock", err)
		}
	}
	if err := fn(ctx, &publishTx{s: s, tx: tx}); err != nil {
		return err
	}
	return s.fail("commit publish", tx.Commit())
}

type publishTx struct {
	s  *Store
	tx *sql.Tx
}

func (p *publishTx) RoleVersion(ctx context.Context, role string) (state.RoleVersion, error) {
	return p.s.roleVersion(ctx, p.tx, role)
}

func (p *publishTx) RoleVersions(ctx context.Context) ([]state.RoleVersion, error) {
	return p.s.roleVersions(ctx, p.tx)
}

func (p *publishTx) SetRoleVersion(ctx context.Context, v state.RoleVersion) error {
	if err := v.Validate(); err != nil {
		return err
	}
	cur, err := p.RoleVersion(ctx, v.Role)
	switch {
	case err == nil && v.Version <= cur.Version:
		return state.VersionConflict(v.Role, cur.Version, v.Version)
	case err != nil && !errors.Is(err, state.ErrNotFound):
		return err
	}
	_, err = p.tx.ExecContext(ctx, p.s.d.rebind(`INSERT INTO tuf_role_versions (`+roleColumns+`) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (role) DO UPDATE SET version = excluded.version, sha256 = excluded.sha256, length = excluded.length,
		expires_unix_ms = excluded.expires_unix_ms, updated_unix_ms = excluded.updated_unix_ms`),
		v.Role, v.Version, v.SHA256, v.Length, v.Expires.UnixMilli(), p.s.now().UnixMilli())
	return p.s.fail("record role version", err)
}

// fail classifies a database error by what the caller should do: a database
// that is down, busy or slow is Unavailable (retry later); anything else is
// Internal. Client messages never carry SQL or driver text.
func (s *Store) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	var ae *apperr.Error
	if errors.As(err, &ae) {
		return err
	}
	if transient(err) {
		return apperr.Wrap(fmt.Errorf("%s: %w", op, err), apperr.Unavailable, "the database is unavailable; try again later")
	}
	return apperr.Wrap(fmt.Errorf("%s: %w", op, err), apperr.Internal, "database error")
}

// SQLite result codes that mean "busy or broken storage, try later".
const (
	sqliteBusy     = 5
	sqliteLocked   = 6
	sqliteIOErr    = 10
	sqliteFull     = 13
	sqliteCantOpen = 14
)

func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08 connection exceptions, 40 transaction rollbacks
		// (serialization, deadlock), 53 insufficient resources, 57 operator
		// intervention (shutdown).
		switch pe.Code[:2] {
		case "08", "40", "53", "57":
			return true
		}
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqliteBusy, sqliteLocked, sqliteIOErr, sqliteFull, sqliteCantOpen:
			return true
		}
	}
	return false
}
