// Package atomicfile replaces files so that a crash or power cut leaves
// either the old content or the new one: write a temporary file in the same
// directory, fsync it, rename it over the target, fsync the directory. Every
// Vigil program that keeps state in files (keys, the agent's journal and
// outbox, the CLI's trusted root) writes through it.
package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile durably replaces path with data, with permissions perm.
func WriteFile(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
