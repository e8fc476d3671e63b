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

Generate the new keys first with 'vigil keys generate' on the offline machine.
Rotation cannot be undone: run it with --dry-run first, then again with --yes.`,
	}
	cmd.AddCommand(newRotateRootCmd(g), newRotateProductCmd(g))
	return cmd
}

func newRotateRootCmd(g *globals) *cobra.Command {
	var so serverOptions
	var oldKeys, newKeys []string
	var threshold int
	var yes bool
	cmd := &cobra.Command{
		Use:   "root",
		Short: "Publish a new root with new root keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sess, err := so.session()
			if err != nil {
				return err
			}
			if err := so.confirm(yes); err != nil {
				return err
			}
			if len(newKeys) == 0 {
				return usagef("--new-key is required")
			}
			if len(oldKeys) == 0 {
				if so.keysDir == "" {
					return usagef("--old-key or --keys-dir is required")
				}
				if oldKeys, err = repotool.RootKeyFiles(so.keysDir); err != nil {
					return UsageError{err}
				}
			}
			ok, err := repotool.LoadSigners(oldKeys)
			if err != nil {
				return UsageError{err}
			}
			nk, err := repotool.LoadSigners(newKeys)
			if err != nil {
				return UsageError{err}
			}
			if threshold < 1 || threshold > len(nk) {
				return usagef("--threshold %d needs between 1 and %d new keys", threshold, len(nk))
			}
			resp, err := sess.RotateRoot(cmd.Context(), ok, nk, threshold)
			if err != nil {
				return err
			}
			return g.emit(map[string]any{"versions": resp.Versions, "trusted_root": sess.TrustedRoot}, func(w io.Writer) {
				if so.dryRun {
					fmt.Fprintf(w, "root %s: %s\n", dryWord(true, "rotated"), versionLine(resp.Versions))
					return
				}
				fmt.Fprintf(w, "root rotated: %s\ntrusted root updated: %s\n", versionLine(resp.Versions), sess.TrustedRoot)
			})
		},
	}
	so.register(cmd)
	cmd.Flags().StringArrayVar(&oldKeys, "old-key", nil, "current root private key file (repeat; default KEYS_DIR/root-*.key)")
	cmd.Flags().StringArrayVar(&newKeys, "new-key", nil, "new root private key file (repeat; required)")
	cmd.Flags().IntVar(&threshold, "threshold", repotool.DefaultRootThreshold, "signatures the new root requires")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the irreversible rotation")
	return cmd
}

func newRotateProductCmd(g *globals) *cobra.Command {
	var so serverOptions
	var newKeys []string
	var threshold int
	var targetsKey string
	var yes bool
	cmd := &cobra.Command{
		Use:   "product NAME",
		Short: "Move a product role to new keys",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sess, err := so.session()
			if err != nil {
				return err
			}
			if err := so.confirm(yes); err != nil {
				return err
			}
			if len(newKeys) == 0 {
				return usagef("--new-key is required")
			}
			nk, err := repotool.LoadSigners(newKeys)
			if err != nil {
				return UsageError{err}
			}
			tk, err := so.targetsSigner(targetsKey)
			if err != nil {
				return err
			}
			if threshold < 1 || threshold > len(nk) {
				return usagef("--threshold %d needs between 1 and %d new keys", threshold, len(nk))
			}
			resp, err := sess.RotateProduct(cmd.Context(), args[0], tk, nk, threshold)
			if err != nil {
				return err
			}
			return g.emit(map[string]any{"product": args[0], "versions": resp.Versions}, func(w io.Writer) {
				fmt.Fprintf(w, "product %s %s: %s\n", args[0], dryWord(so.dryRun, "rotated"), versionLine(resp.Versions))
			})
		},
	}
	so.register(cmd)
	cmd.Flags().StringArrayVar(&newKeys, "new-key", nil, "new product private key file (repeat; required)")
	cmd.Flags().IntVar(&threshold, "threshold", 1, "product signatures required")
	cmd.Flags().StringVar(&targetsKey, "targets-key", "", "targets private key file (default KEYS_DIR/targets.key)")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the irreversible rotation")
	return cmd
}

// confirm refuses an irreversible action without --yes (a dry run needs none).
func (o *serverOptions) confirm(yes bool) error {
	if yes || o.dryRun {
		return nil
	}
	return usagef("key rotation cannot be undone: check it with --dry-run, then run it again with --yes")
}
