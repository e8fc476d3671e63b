package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/api/client"
	"github.com/vigil-ota/vigil/tools/internal/repotool"
)

// EnvToken carries the management token.
const EnvToken = "VIGIL_TOKEN"

// serverOptions are the flags every repository command shares.
type serverOptions struct {
	server      string
	keysDir     string
	trustedRoot string
	tufDir      string
	dryRun      bool
}

func (o *serverOptions) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.server, "server", "", "vigil-server URL, e.g. http://127.0.0.1:8080 (required)")
	cmd.Flags().StringVar(&o.keysDir, "keys-dir", "", "directory with the keys (the keys-example/ layout; see 'vigil keys generate --help')")
	cmd.Flags().StringVar(&o.trustedRoot, "trusted-root", "", "root metadata to trust (default KEYS_DIR/"+repotool.TrustedRootFile+")")
	cmd.Flags().StringVar(&o.tufDir, "tuf-dir", "", "where verified repository metadata is cached (default: the user cache directory)")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "build and sign, but submit and upload nothing; print what would be published")
}

func (o *serverOptions) session() (*repotool.Session, error) {
	if o.server == "" {
		return nil, usagef("--server is required")
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
		h := sha256.Sum256(append([]byte(o.server+"\x00"), rootBytes...))
		dir = filepath.Join(cache, "vigil", "tuf", hex.EncodeToString(h[:8]))
	}
	return &repotool.Session{API: client.New(o.server, os.Getenv(EnvToken)), Server: o.server, TrustedRoot: tr, TUFDir: dir, DryRun: o.dryRun}, nil
}

func (o *serverOptions) keyPath(flag, def string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if o.keysDir == "" {
		return "", usagef("--keys-dir is required (or give the key files one by one)")
	}
	return filepath.Join(o.keysDir, def), nil
}

// targetsSigner loads the targets key: --targets-key, or KEYS_DIR/targets.key.
func (o *serverOptions) targetsSigner(flag string) (*repotool.Signer, error) {
	path, err := o.keyPath(flag, "targets.key")
	if err != nil {
		return nil, err
	}
	k, err := repotool.LoadSigner(path)
	if err != nil {
		return nil, UsageError{err}
	}
	return k, nil
}

func newRepoCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Set up and maintain the signed repository",
		Long: `Set up and maintain the TUF repository that devices trust.

Procedure for a new repository:
  1. vigil keys generate root-1 root-2 root-3 targets product-NAME snapshot timestamp --dir KEYS
  2. give vigil-server the online keys: --snapshot-key KEYS/snapshot.key --timestamp-key KEYS/timestamp.key
  3. vigil repo init --server URL --keys-dir KEYS        (writes KEYS/trusted-root.json: ship it in devices)
  4. vigil repo add-product NAME --server URL --keys-dir KEYS
  5. vigil release publish --product NAME ...

Management calls send the token in $VIGIL_TOKEN.`,
	}
	cmd.AddCommand(newRepoInitCmd(g), newRepoAddProductCmd(g), newRepoRotateCmd(g))
	return cmd
}

func newRepoInitCmd(g *globals) *cobra.Command {
	var so serverOptions
	var rootKeys []string
	var threshold int
	var targetsKey, snapshotPub, timestampPub string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create root and targets metadata with offline keys and initialise the repository",
		Long: `Build root v1 (the root keys with their threshold, the targets key, and the
server's online snapshot and timestamp keys) and an empty targets role, sign
them here with the offline keys, and submit them. The private root and
targets keys never leave this machine.

The new root is written to --trusted-root (default KEYS_DIR/trusted-root.json):
it is what devices must trust, so build it into their images.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sess, err := so.session()
			if err != nil {
				return err
			}
			if len(rootKeys) == 0 {
				if so.keysDir == "" {
					return usagef("--root-key or --keys-dir is required")
				}
				if rootKeys, err = repotool.RootKeyFiles(so.keysDir); err != nil {
					return UsageError{err}
				}
			}
			rk, err := repotool.LoadSigners(rootKeys)
			if err != nil {
				return UsageError{err}
			}
			for def, p := range map[string]*string{"snapshot.pub": &snapshotPub, "timestamp.pub": &timestampPub} {
				if *p, err = so.keyPath(*p, def); err != nil {
					return err
				}
			}
			tk, err := so.targetsSigner(targetsKey)
			if err != nil {
				return err
			}
			if threshold > len(rk) {
				return usagef("--root-threshold %d is more than the %d root keys", threshold, len(rk))
			}
			resp, err := sess.Init(cmd.Context(), repotool.InitOptions{RootKeys: rk, RootThreshold: threshold, TargetsKey: tk,
				SnapshotPub: snapshotPub, TimestampPub: timestampPub, TrustedRootOut: sess.TrustedRoot})
			if err != nil {
				return err
			}
			return g.emit(map[string]any{"versions": resp.Versions, "trusted_root": sess.TrustedRoot}, func(w io.Writer) {
				if so.dryRun {
					fmt.Fprintf(w, "dry run: would initialise %s; nothing was submitted\n", versionLine(resp.Versions))
					return
				}
				fmt.Fprintf(w, "repository initialised: %s\ntrusted root written to %s (ship it in devices)\n", versionLine(resp.Versions), sess.TrustedRoot)
			})
		},
	}
	so.register(cmd)
	cmd.Flags().StringArrayVar(&rootKeys, "root-key", nil, "root private key file (repeat; default KEYS_DIR/root-*.key)")
	cmd.Flags().IntVar(&threshold, "root-threshold", repotool.DefaultRootThreshold, "root signatures required")
	cmd.Flags().StringVar(&targetsKey, "targets-key", "", "targets private key file (default KEYS_DIR/targets.key)")
	cmd.Flags().StringVar(&snapshotPub, "snapshot-pub", "", "server's snapshot public key (default KEYS_DIR/snapshot.pub)")
	cmd.Flags().StringVar(&timestampPub, "timestamp-pub", "", "server's timestamp public key (default KEYS_DIR/timestamp.pub)")
	return cmd
}

func versionLine(v map[string]int64) string {
	var keys []string
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s=v%d", k, v[k])
	}
	return s
}

func newRepoAddProductCmd(g *globals) *cobra.Command {
	var so serverOptions
	var keys []string
	var threshold int
	var targetsKey string
	cmd := &cobra.Command{
		Use:   "add-product NAME",
		Short: "Delegate a product line to its own role and keys",
		Long: `Add a product role NAME for target paths NAME/*: the targets key signs the
new delegation (with the product keys and threshold), the product keys sign
the role's first, empty version. Release engineers of NAME then publish with
the product keys alone.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sess, err := so.session()
			if err != nil {
				return err
			}
			product := args[0]
			if len(keys) == 0 {
				if so.keysDir == "" {
					return usagef("--key or --keys-dir is required")
				}
				keys = repotool.ProductKeyFiles(so.keysDir, product)
			}
			pk, err := repotool.LoadSigners(keys)
			if err != nil {
				return UsageError{err}
			}
			tk, err := so.targetsSigner(targetsKey)
			if err != nil {
				return err
			}
			if threshold < 1 || threshold > len(pk) {
				return usagef("--threshold %d needs between 1 and %d keys", threshold, len(pk))
			}
			resp, err := sess.AddProduct(cmd.Context(), product, tk, pk, threshold)
			if err != nil {
				return err
			}
			return g.emit(map[string]any{"product": product, "versions": resp.Versions}, func(w io.Writer) {
				fmt.Fprintf(w, "product %s %s: %s\n", product, dryWord(so.dryRun, "added"), versionLine(resp.Versions))
			})
		},
	}
	so.register(cmd)
	cmd.Flags().StringArrayVar(&keys, "key", nil, "product private key file (repeat; default KEYS_DIR/product-NAME.key)")
	cmd.Flags().IntVar(&threshold, "threshold", 1, "product signatures required")
	cmd.Flags().StringVar(&targetsKey, "targets-key", "", "targets private key file (default KEYS_DIR/targets.key)")
	return cmd
}

// dryWord describes an action, or what it would have done in a dry run.
func dryWord(dry bool, done string) string {
	if dry {
		return "would be " + done + " (dry run; nothing submitted)"
	}
	return done
}
