package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/internal/keyfile"
)

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Generate and inspect signing keys",
	}
	cmd.AddCommand(newKeysGenerateCmd(g), newKeysIDCmd(g))
	return cmd
}

// KeyInfo is one key in the output of 'vigil keys id'.
type KeyInfo struct {
	File  string `json:"file"`
	KeyID string `json:"keyid"`
	Type  string `json:"type"`
}

func newKeysIDCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "id FILE.pub [FILE.pub...]",
		Short: "Print the TUF key id of public key files",
		Long: `Print the TUF key id (hex SHA-256 of the key's canonical JSON form) of each
public key file, to compare against root.json or a delegation.`,
		Example: "  vigil keys id keys/root-1.pub keys/product-demo-pump.pub",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, files []string) error {
			var out []KeyInfo
			for _, f := range files {
				pub, err := keyfile.ReadPublic(f)
				if err != nil {
					return UsageError{err}
				}
				id, err := keyfile.KeyID(pub)
				if err != nil {
					return err
				}
				out = append(out, KeyInfo{File: f, KeyID: id, Type: fmt.Sprintf("%T", pub)})
			}
			return g.emit(out, func(w io.Writer) {
				for _, k := range out {
					fmt.Fprintf(w, "%s  %s\n", k.KeyID, k.File)
				}
			})
		},
	}
}

type keysGenerateOptions struct {
	dir   string
	force bool
}

// GeneratedKey is one key in the output of 'vigil keys generate'.
type GeneratedKey struct {
	Name       string `json:"name"`
	KeyID      string `json:"keyid"`
	Type       string `json:"type"`
	PrivateKey string `json:"private_key"`
	PublicKey  string `json:"public_key"`
}

func newKeysGenerateCmd(g *globals) *cobra.Command {
	o := &keysGenerateOptions{}
	cmd := &cobra.Command{
		Use:   "generate NAME [NAME...]",
		Short: "Generate ed25519 signing key pairs",
		Long: `Generate one ed25519 key pair per NAME in --dir:

  NAME.key   private key, PEM "PRIVATE KEY" (PKCS#8), mode 0600
  NAME.pub   public key,  PEM "PUBLIC KEY" (PKIX),    mode 0644

and print each key's TUF key id.

The layout Vigil's repository commands expect in a keys directory:

  root-1 root-2 root-3   offline root keys (threshold 2)
  targets                offline targets key: signs product delegations only
  product-NAME           offline key of product NAME (e.g. product-demo-pump)
  snapshot timestamp     online keys; their private halves go to vigil-server

Procedure for production keys: generate root and targets keys on an
offline machine, copy only the .pub files off it, and keep the .key files
on encrypted, backed-up media. Existing keys are never replaced unless you
pass --force: a lost offline key cannot be recovered.`,
		Example: "  vigil keys generate root-1 root-2 root-3 targets product-demo-pump snapshot timestamp --dir ./keys\n  vigil keys generate pump-0001 --dir ./station-keys",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, names []string) error {
			return keysGenerate(g, o, names)
		},
	}
	cmd.Flags().StringVar(&o.dir, "dir", ".", "directory to write the key files to (created with mode 0700)")
	cmd.Flags().BoolVar(&o.force, "force", false, "replace existing key files (irreversible)")
	return cmd
}

func keysGenerate(g *globals, o *keysGenerateOptions, names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		if err := keyfile.ValidateName(n); err != nil {
			return UsageError{err}
		}
		if seen[n] {
			return usagef("key name %q is given twice", n)
		}
		seen[n] = true
	}
	// Refuse before writing anything if any key exists: all or nothing.
	if !o.force {
		for _, n := range names {
			priv, pub := keyfile.Paths(o.dir, n)
			for _, p := range []string{priv, pub} {
				if _, err := os.Stat(p); err == nil {
					return UsageError{fmt.Errorf("%w: %s (pass --force to replace it; nothing was written)", keyfile.ErrExists, p)}
				}
			}
		}
	}
	var out []GeneratedKey
	for _, n := range names {
		k, err := keyfile.GenerateEd25519()
		if err != nil {
			return err
		}
		priv, pub, err := keyfile.Write(o.dir, n, k, o.force)
		if err != nil {
			if errors.Is(err, keyfile.ErrExists) {
				return UsageError{err}
			}
			return err
		}
		id, err := keyfile.KeyID(k.Public())
		if err != nil {
			return err
		}
		out = append(out, GeneratedKey{Name: n, KeyID: id, Type: "ed25519", PrivateKey: priv, PublicKey: pub})
	}
	return g.emit(out, func(w io.Writer) {
		for _, k := range out {
			fmt.Fprintf(w, "%-20s %s  %s\n", k.Name, k.KeyID, k.PrivateKey)
		}
	})
}
