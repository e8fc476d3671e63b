package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/tools/internal/repotool"
)

func newRepoRotateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate root keys or a product's keys",
		Long: `Replace signing keys without reflashing devices.

  vigil repo rotate root --new-key F [--new-key F ...] --threshold N ...
      publishes root version N+1, signed by a threshold of the current root keys
      AND a threshold of the new ones; devices walk from any older root to it.
  vigil repo rotate product NAME --new-key F [--new-key F ...] [--threshold N]
      re-delegates NAME to the new keys (signed by the targets key) and re-signs
      NAME's role with them; the old product keys stop working at once.
  vigil repo rotate online --reason TEXT [--incident ID] ...
      publishes root version N+1 delegating snapshot and timestamp to the server's
      next online keys (snapshot_key_next, timestamp_key_next); the server signs
      with them from this publish on. Then make them the server's current keys.

Generate the new keys first with 'vigil keys generate' on the offline machine.
Rotation cannot be undone: run it with --dry-run first, then again with --yes.`,
		Example: "  vigil repo rotate product demo-pump --new-key keys/product-demo-pump-2.key --keys-dir keys --dry-run",
	}
	cmd.AddCommand(newRotateRootCmd(g), newRotateProductCmd(g), newRotateOnlineCmd(g))
	return cmd
}

type rotateOptions struct {
	repoOptions
	oldKeys, newKeys []string
	threshold        int
	targetsKey       string
	yes              bool
}

func newRotateRootCmd(g *globals) *cobra.Command {
	o := &rotateOptions{}
	cmd := &cobra.Command{
		Use:     "root",
		Short:   "Publish a new root with new root keys",
		Long:    "Publish root version N+1 with new root keys and threshold, signed by a threshold of the\ncurrent root keys and of the new ones, and update the trusted root file.",
		Example: "  vigil repo rotate root --new-key k/root-4.key --new-key k/root-5.key --new-key k/root-6.key --threshold 2 --keys-dir k --yes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sess, err := o.session()
			if err != nil {
				return err
			}
			if err := confirm(o.yes, o.dryRun, "a root rotation"); err != nil {
				return err
			}
			oldKeys, err := o.keyset("old-key", o.oldKeys, repotool.RootKeyFiles, 0, "root keys")
			if err != nil {
				return err
			}
			newKeys, err := o.keyset("new-key", o.newKeys, nil, o.threshold, "new root keys")
			if err != nil {
				return err
			}
			resp, err := sess.RotateRoot(cmd.Context(), oldKeys, newKeys, o.threshold)
			if err != nil {
				return err
			}
			return g.emit(RepoResult{Versions: resp.Versions, TrustedRoot: sess.TrustedRoot, DryRun: o.dryRun}, func(w io.Writer) {
				if o.dryRun {
					fmt.Fprintf(w, "root %s: %s\n", dryWord(true, "rotated"), versionLine(resp.Versions))
					return
				}
				fmt.Fprintf(w, "root rotated: %s\ntrusted root updated: %s\n", versionLine(resp.Versions), sess.TrustedRoot)
			})
		},
	}
	o.register(cmd, g)
	cmd.Flags().StringArrayVar(&o.oldKeys, "old-key", nil, "current root private key file (repeat; default KEYS_DIR/root-*.key)")
	cmd.Flags().StringArrayVar(&o.newKeys, "new-key", nil, "new root private key file (repeat; required)")
	cmd.Flags().IntVar(&o.threshold, "threshold", repotool.DefaultRootThreshold, "signatures the new root requires")
	cmd.Flags().BoolVar(&o.yes, "yes", false, "confirm the irreversible rotation")
	return cmd
}

func newRotateProductCmd(g *globals) *cobra.Command {
	o := &rotateOptions{}
	cmd := &cobra.Command{
		Use:     "product NAME",
		Short:   "Move a product role to new keys",
		Long:    "Re-delegate product NAME to new keys (signed by the targets key) and re-sign its role\nwith them; the old product keys stop working at once.",
		Example: "  vigil repo rotate product demo-pump --new-key keys/product-demo-pump-2.key --keys-dir keys --yes",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sess, err := o.session()
			if err != nil {
				return err
			}
			if err := confirm(o.yes, o.dryRun, "a product key rotation"); err != nil {
				return err
			}
			newKeys, err := o.keyset("new-key", o.newKeys, nil, o.threshold, "new product keys")
			if err != nil {
				return err
			}
			tk, err := o.signer(o.targetsKey, "targets.key")
			if err != nil {
				return err
			}
			resp, err := sess.RotateProduct(cmd.Context(), args[0], tk, newKeys, o.threshold)
			if err != nil {
				return err
			}
			return g.emit(RepoResult{Product: args[0], Versions: resp.Versions, DryRun: o.dryRun}, func(w io.Writer) {
				fmt.Fprintf(w, "product %s %s: %s\n", args[0], dryWord(o.dryRun, "rotated"), versionLine(resp.Versions))
			})
		},
	}
	o.register(cmd, g)
	cmd.Flags().StringArrayVar(&o.newKeys, "new-key", nil, "new product private key file (repeat; required)")
	cmd.Flags().IntVar(&o.threshold, "threshold", 1, "product signatures required")
	cmd.Flags().StringVar(&o.targetsKey, "targets-key", "", "targets private key file (default KEYS_DIR/targets.key)")
	cmd.Flags().BoolVar(&o.yes, "yes", false, "confirm the irreversible rotation")
	return cmd
}

func newRotateOnlineCmd(g *globals) *cobra.Command {
	o := &rotateOptions{}
	var reason, incident string
	cmd := &cobra.Command{
		Use:   "online --reason TEXT [--incident ID] --yes",
		Short: "Move snapshot and timestamp to the server's next online keys (key compromise)",
		Long: `Rotate the online keys, e.g. when the server or its key store may be compromised:

  1. generate new keys where the server can read them (or in the KMS):
       vigil keys generate snapshot-2 timestamp-2 --dir /etc/vigil/keys
  2. set snapshot_key_next and timestamp_key_next and restart the server
  3. vigil repo rotate online --keys-dir ./offline-keys --reason "…" --incident INC-… --yes
     (root N+1 names the new keys, signed by a threshold of the root keys; the
     server signs with them from this publish on; devices walk to root N+1)
  4. make the new keys snapshot_key/timestamp_key, unset the *_next settings,
     restart, and destroy the old keys.

A root signed by the old online keys is never trusted again by a device that has
seen root N+1. docs/key-ceremony.md walks through it.`,
		Example: `  vigil repo rotate online --keys-dir keys --reason "server image leaked" --incident INC-1A2B --yes`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if reason == "" {
				return usagef("--reason is required (audited)")
			}
			sess, err := o.session()
			if err != nil {
				return err
			}
			if err := confirm(o.yes, o.dryRun, "an online-key rotation"); err != nil {
				return err
			}
			rootKeys, err := o.keyset("root-key", o.oldKeys, repotool.RootKeyFiles, 0, "root keys")
			if err != nil {
				return err
			}
			resp, err := sess.RotateOnline(cmd.Context(), rootKeys, reason, incident)
			if err != nil {
				return err
			}
			return g.emit(RepoResult{Versions: resp.Versions, TrustedRoot: sess.TrustedRoot, DryRun: o.dryRun}, func(w io.Writer) {
				fmt.Fprintf(w, "online keys %s: %s\n", dryWord(o.dryRun, "rotated"), versionLine(resp.Versions))
				if !o.dryRun {
					fmt.Fprintln(w, "now make snapshot_key_next and timestamp_key_next the server's current keys and restart it")
				}
			})
		},
	}
	o.register(cmd, g)
	cmd.Flags().StringArrayVar(&o.oldKeys, "root-key", nil, "root private key file (repeat; default KEYS_DIR/root-*.key)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required; audited)")
	cmd.Flags().StringVar(&incident, "incident", "", "the incident this rotation answers")
	cmd.Flags().BoolVar(&o.yes, "yes", false, "confirm the irreversible rotation")
	return cmd
}
