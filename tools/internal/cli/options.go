package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/tools/internal/repotool"
)

// repoOptions are the flags of every repository command: where the keys and
// the trusted root are, where verified metadata is cached, and --dry-run.
type repoOptions struct {
	g           *globals
	keysDir     string
	trustedRoot string
	tufDir      string
	dryRun      bool
}

func (o *repoOptions) register(cmd *cobra.Command, g *globals) {
	o.g = g
	cmd.Flags().StringVar(&o.keysDir, "keys-dir", "", "directory with the keys (the keys-example/ layout; see 'vigil keys generate --help')")
	cmd.Flags().StringVar(&o.trustedRoot, "trusted-root", "", "root metadata to trust (default KEYS_DIR/"+repotool.TrustedRootFile+")")
	cmd.Flags().StringVar(&o.tufDir, "tuf-dir", "", "where verified repository metadata is cached (default: the user cache directory)")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "build and sign, but submit and upload nothing; print what would be published")
}

func (o *repoOptions) session() (*repotool.Session, error) {
	api, err := o.g.client()
	if err != nil {
		return nil, err
	}
	tr := o.trustedRoot
	if tr == "" {
		if o.keysDir == "" {
			return nil, usagef("--trusted-root or --keys-dir is required")
		}
		tr = filepath.Join(o.keysDir, repotool.TrustedRootFile)
	}
	dir := o.tufDir
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		// Keyed by the trusted root's content: a repository initialised
		// again at the same URL gets a fresh cache, not a rollback error.
		rootBytes, _ := os.ReadFile(tr)
		h := sha256.Sum256(append([]byte(o.g.server+"\x00"), rootBytes...))
		dir = filepath.Join(cache, "vigil", "tuf", hex.EncodeToString(h[:8]))
	}
	return &repotool.Session{API: api, Server: o.g.server, TrustedRoot: tr, TUFDir: dir, DryRun: o.dryRun}, nil
}

// keyFile is a key given by its flag, or found in --keys-dir.
func (o *repoOptions) keyFile(flag, def string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if o.keysDir == "" {
		return "", usagef("--keys-dir is required (or give the key files one by one)")
	}
	return filepath.Join(o.keysDir, def), nil
}

// keyset loads signing keys: the files given with flag, or else the ones
// defaults finds in --keys-dir; then it checks that threshold (0: no
// check) is between 1 and the number of keys. what names them in errors.
func (o *repoOptions) keyset(flag string, files []string, defaults func(dir string) ([]string, error), threshold int, what string) ([]*repotool.Signer, error) {
	if len(files) == 0 {
		if defaults == nil {
			return nil, usagef("--%s is required", flag)
		}
		if o.keysDir == "" {
			return nil, usagef("--%s or --keys-dir is required", flag)
		}
		var err error
		if files, err = defaults(o.keysDir); err != nil {
			return nil, UsageError{err}
		}
	}
	keys, err := repotool.LoadSigners(files)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && errors.Is(err, fs.ErrNotExist) {
			name := strings.TrimSuffix(filepath.Base(pe.Path), ".key")
			return nil, usagef("%s: no such key file. Make it on the offline machine with `vigil keys generate %s --dir %s` "+
				"(then, for a product key, `vigil repo add-product` or `vigil repo rotate product` delegates to it), or name the right file with --%s",
				pe.Path, name, filepath.Dir(pe.Path), flag)
		}
		return nil, UsageError{err}
	}
	if threshold != 0 && (threshold < 1 || threshold > len(keys)) {
		return nil, usagef("threshold %d needs between 1 and %d %s", threshold, len(keys), what)
	}
	return keys, nil
}

// signer loads one key: flag, or KEYS_DIR/def.
func (o *repoOptions) signer(flag, def string) (*repotool.Signer, error) {
	path, err := o.keyFile(flag, def)
	if err != nil {
		return nil, err
	}
	k, err := repotool.LoadSigner(path)
	if err != nil {
		return nil, UsageError{err}
	}
	return k, nil
}

// confirm refuses an irreversible action without --yes; a dry run needs
// none. what says what cannot be undone.
func confirm(yes, dryRun bool, what string) error {
	if yes || dryRun {
		return nil
	}
	return usagef("%s cannot be undone: run again with --yes", what)
}

// dryWord describes an action, or what it would have done in a dry run.
func dryWord(dry bool, done string) string {
	if dry {
		return "would be " + done + " (dry run; nothing submitted)"
	}
	return done
}

func versionLine(v map[string]int64) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=v%d", k, v[k]))
	}
	return strings.Join(parts, " ")
}
