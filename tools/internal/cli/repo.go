package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/tools/internal/repotool"
)

// RepoResult is what repo init, add-product and rotate print.
type RepoResult struct {
	Product     string           `json:"product,omitempty"`
	Versions    map[string]int64 `json:"versions"`
	TrustedRoot string           `json:"trusted_root,omitempty"`
	DryRun      bool             `json:"dry_run,omitempty"`
}

func newRepoCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Set up and maintain the signed repository",
		Long: `Set up and maintain the TUF repository that devices trust.

Procedure for a new repository:
  1. vigil keys generate root-1 root-2 root-3 targets product-NAME snapshot timestamp --dir KEYS
  2. give vigil-server the online keys: --snapshot-key KEYS/snapshot.key --timestamp-key KEYS/timestamp.key
  3. vigil repo init --keys-dir KEYS        (writes KEYS/trusted-root.json: ship it in devices)
  4. vigil repo add-product NAME --keys-dir KEYS
  5. vigil release publish --product NAME ...`,
		Example: "  vigil repo init --server http://127.0.0.1:8080 --keys-dir ./keys",
	}
	cmd.AddCommand(newRepoInitCmd(g), newRepoAddProductCmd(g), newRepoRotateCmd(g))
	return cmd
}

type repoInitOptions struct {
	repoOptions
	rootKeys                              []string
	threshold                             int
	targetsKey, snapshotPub, timestampPub string
	expectOnline                          []string
}

func newRepoInitCmd(g *globals) *cobra.Command {
	o := &repoInitOptions{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create root and targets metadata with offline keys and initialise the repository",
		Long: `Build root v1 (the root keys with their threshold, the targets key, and the
server's online snapshot and timestamp keys) and an empty targets role, sign
them here with the offline keys, and submit them. The private root and
targets keys never leave this machine.

The online keys: --snapshot-pub and --timestamp-pub (default KEYS_DIR/snapshot.pub,
KEYS_DIR/timestamp.pub) when you hold their public halves; otherwise they are taken
from the server, and you must confirm their ids with --expect-online-keyid (the
server logs them at start: "online keys"), so a server cannot slip in keys of its
choosing.

The new root is written to --trusted-root (default KEYS_DIR/trusted-root.json):
it is what devices must trust, so build it into their images.`,
		Example: "  vigil repo init --server http://127.0.0.1:8080 --keys-dir ./keys --root-threshold 2\n" +
			"  vigil repo init --keys-dir ./offline-keys --expect-online-keyid 3f1c… --expect-online-keyid 9a0b…",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return repoInit(cmd, g, o) },
	}
	o.register(cmd, g)
	f := cmd.Flags()
	f.StringArrayVar(&o.rootKeys, "root-key", nil, "root private key file (repeat; default KEYS_DIR/root-*.key)")
	f.IntVar(&o.threshold, "root-threshold", repotool.DefaultRootThreshold, "root signatures required")
	f.StringVar(&o.targetsKey, "targets-key", "", "targets private key file (default KEYS_DIR/targets.key)")
	f.StringVar(&o.snapshotPub, "snapshot-pub", "", "server's snapshot public key (default KEYS_DIR/snapshot.pub)")
	f.StringVar(&o.timestampPub, "timestamp-pub", "", "server's timestamp public key (default KEYS_DIR/timestamp.pub)")
	f.StringArrayVar(&o.expectOnline, "expect-online-keyid", nil, "take the online keys from the server, checking each key id is one of these (repeat)")
	return cmd
}

func repoInit(cmd *cobra.Command, g *globals, o *repoInitOptions) error {
	sess, err := o.session()
	if err != nil {
		return err
	}
	rk, err := o.keyset("root-key", o.rootKeys, repotool.RootKeyFiles, o.threshold, "root keys")
	if err != nil {
		return err
	}
	var snap, ts string
	var online map[string]*metadata.Key
	if o.snapshotPub == "" && o.timestampPub == "" && (len(o.expectOnline) > 0 || !fileExists(filepath.Join(o.keysDir, "snapshot.pub"))) {
		if online, err = sess.ServerOnlineKeys(cmd.Context(), o.expectOnline); err != nil {
			return err
		}
	} else {
		if snap, err = o.keyFile(o.snapshotPub, "snapshot.pub"); err != nil {
			return err
		}
		if ts, err = o.keyFile(o.timestampPub, "timestamp.pub"); err != nil {
			return err
		}
	}
	tk, err := o.signer(o.targetsKey, "targets.key")
	if err != nil {
		return err
	}
	resp, err := sess.Init(cmd.Context(), repotool.InitOptions{RootKeys: rk, RootThreshold: o.threshold, TargetsKey: tk,
		SnapshotPub: snap, TimestampPub: ts, Online: online, TrustedRootOut: sess.TrustedRoot})
	if err != nil {
		return err
	}
	res := RepoResult{Versions: resp.Versions, TrustedRoot: sess.TrustedRoot, DryRun: o.dryRun}
	return g.emit(res, func(w io.Writer) {
		if o.dryRun {
			fmt.Fprintf(w, "dry run: would initialise %s; nothing was submitted\n", versionLine(resp.Versions))
			return
		}
		fmt.Fprintf(w, "repository initialised: %s\ntrusted root written to %s (ship it in devices)\n", versionLine(resp.Versions), sess.TrustedRoot)
	})
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

type addProductOptions struct {
	repoOptions
	keys       []string
	threshold  int
	targetsKey string
}

func newRepoAddProductCmd(g *globals) *cobra.Command {
	o := &addProductOptions{}
	cmd := &cobra.Command{
		Use:   "add-product NAME",
		Short: "Delegate a product line to its own role and keys",
		Long: `Add a product role NAME for target paths NAME/*: the targets key signs the
new delegation (with the product keys and threshold), the product keys sign
the role's first, empty version. Release engineers of NAME then publish with
the product keys alone.`,
		Example: "  vigil repo add-product demo-pump --keys-dir ./keys",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sess, err := o.session()
			if err != nil {
				return err
			}
			product := args[0]
			pk, err := o.keyset("key", o.keys, func(dir string) ([]string, error) { return repotool.ProductKeyFiles(dir, product), nil }, o.threshold, "product keys")
			if err != nil {
				return err
			}
			tk, err := o.signer(o.targetsKey, "targets.key")
			if err != nil {
				return err
			}
			resp, err := sess.AddProduct(cmd.Context(), product, tk, pk, o.threshold)
			if err != nil {
				return err
			}
			return g.emit(RepoResult{Product: product, Versions: resp.Versions, DryRun: o.dryRun}, func(w io.Writer) {
				fmt.Fprintf(w, "product %s %s: %s\n", product, dryWord(o.dryRun, "added"), versionLine(resp.Versions))
			})
		},
	}
	o.register(cmd, g)
	cmd.Flags().StringArrayVar(&o.keys, "key", nil, "product private key file (repeat; default KEYS_DIR/product-NAME.key)")
	cmd.Flags().IntVar(&o.threshold, "threshold", 1, "product signatures required")
	cmd.Flags().StringVar(&o.targetsKey, "targets-key", "", "targets private key file (default KEYS_DIR/targets.key)")
	return cmd
}
