package testsvc

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"
)

// postgresStartTimeout bounds initdb and each start of a private server.
const postgresStartTimeout = 60 * time.Second

// PostgresServer is a private PostgreSQL server this test owns (initdb in
// a temporary directory, its own loopback port), so a fault test can stop
// and restart the database without touching the machine's shared server
// that other packages' tests use at the same time.
type PostgresServer struct {
	DSN  string
	dir  string
	port string
	bin  string
	as   []string // runs the server as the postgres user when we are root

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan error
	logs LockedBuffer
}

// LockedBuffer collects a process's output while a test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// postgresBinDir finds the newest /usr/lib/postgresql/*/bin with initdb.
func postgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(dirs) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", fmt.Errorf("initdb not found (Debian: apt-get install postgresql)")
	}
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(dirs[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(dirs[j]))))
		return vi < vj
	})
	return filepath.Dir(dirs[len(dirs)-1]), nil
}

// StartPostgresServer initialises and starts a private PostgreSQL (trust
// authentication, fsync off: a test database) and stops it when the test
// ends.
func StartPostgresServer(t testing.TB) *PostgresServer {
	t.Helper()
	bin, err := postgresBinDir()
	if err != nil {
		unavailable(t, "postgres", "%v", err)
	}
	s := &PostgresServer{bin: bin}
	dir, err := os.MkdirTemp("", "vigil-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s.dir = filepath.Join(dir, "data")
	if os.Geteuid() == 0 { // PostgreSQL refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			unavailable(t, "postgres", "running as root and there is no postgres user to run a private server as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		s.as = []string{"setpriv", "--reuid", u.Uid, "--regid", u.Gid, "--clear-groups", "--"}
	}
	out, err := s.command(filepath.Join(bin, "initdb"), "-D", s.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput()
	if err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	addr := FreePort(t)
	_, s.port, _ = net.SplitHostPort(addr)
	s.DSN = "postgres://postgres@127.0.0.1:" + s.port + "/postgres?sslmode=disable"
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("private postgres output:\n%s", s.Logs())
		}
	})
	t.Logf("%s postgres", MarkerUsed)
	return s
}

func (s *PostgresServer) command(name string, args ...string) *exec.Cmd {
	all := append(append([]string{}, s.as...), append([]string{name}, args...)...)
	return exec.Command(all[0], all[1:]...)
}

// Start starts the server and waits until it accepts connections.
func (s *PostgresServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("postgres is already running")
	}
	cmd := s.command(filepath.Join(s.bin, "postgres"), "-D", s.dir, "-p", s.port, "-k", filepath.Dir(s.dir),
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200")
	cmd.Stdout, cmd.Stderr = &s.logs, &s.logs
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(postgresStartTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			s.cmd = nil
			return fmt.Errorf("postgres exited during start-up: %v\n%s", err, s.logs.String())
		default:
		}
		if exec.Command(filepath.Join(s.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", s.port).Run() == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("postgres did not accept connections within %s", postgresStartTimeout)
}

// Stop shuts the server down (fast shutdown: open transactions are rolled
// back and clients disconnected, as in a database restart) and waits.
func (s *PostgresServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(postgresStartTimeout):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Logs returns the server's output so far.
func (s *PostgresServer) Logs() string { return s.logs.String() }
