package localblob_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-ota/vigil/server/internal/blob"
	"github.com/vigil-ota/vigil/server/internal/blob/blobtest"
	"github.com/vigil-ota/vigil/server/internal/blob/localblob"
)

func TestLocalDirectoryConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := localblob.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, blobtest.Options{})
}

func TestOpenClearsTemporaryFilesLeftByACrash(t *testing.T) {
	dir := t.TempDir()
	if _, err := localblob.Open(dir); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, ".tmp", "put-123")
	if err := os.WriteFile(leftover, []byte("half an object"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := localblob.Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("leftover temporary file survived Open: %v", err)
	}
}

func TestOpenRefusesUnwritableDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		// root writes anywhere; use a path below a regular file instead.
		f := filepath.Join(t.TempDir(), "file")
		os.WriteFile(f, nil, 0o644)
		if _, err := localblob.Open(filepath.Join(f, "blobs")); err == nil {
			t.Fatal("Open below a regular file succeeded")
		}
		return
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	if _, err := localblob.Open(filepath.Join(dir, "blobs")); err == nil {
		t.Fatal("Open of an unwritable directory succeeded")
	}
}

func TestReservedTemporaryKeyIsRefused(t *testing.T) {
	s, err := localblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(t.Context(), ".tmp/x"); err == nil {
		t.Fatal("the temporary directory is reachable as a key")
	}
}

func BenchmarkLocalDirectory(b *testing.B) {
	s, err := localblob.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	blobtest.Bench(b, s)
}
