package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/api/auditchain"
)

// auditPage is how many entries one request fetches.
const auditPage = 1000

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and export the hash-chained audit log",
		Long: `Every mutating action (publishes, uploads, and later rollout changes,
approvals, token and device changes) is appended to a hash-chained log: each
entry carries the hash of the one before it.

  vigil audit verify                       check the whole chain; names the first broken entry
  vigil audit export --since 2026-11-01 [--out FILE]   JSON lines

Export the log regularly to storage the server cannot write: the chain shows
tampering, an exported copy proves what the log said.`,
	}
	cmd.AddCommand(newAuditVerifyCmd(g), newAuditExportCmd(g))
	return cmd
}

// AuditVerification is what audit verify prints.
type AuditVerification struct {
	OK       bool   `json:"ok"`
	Verified int    `json:"verified"`
	HeadSeq  int64  `json:"head_seq,omitempty"`
	HeadHash string `json:"head_hash,omitempty"`
	BrokenAt int64  `json:"broken_at,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "verify [--file EXPORT.jsonl]",
		Short: "Verify the audit chain end to end (on the server, or an export offline)",
		Long: `Read the whole audit log and check every entry's hash and link; name the first broken entry.
With --file, verify an export ('vigil audit export', or the console's export link) offline,
without a server: keep exports where the server cannot write, and verify them later.`,
		Example: "  vigil audit verify\n  vigil audit verify --file audit-2026-11.jsonl",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			next, err := auditSource(cmd, g, file)
			if err != nil {
				return err
			}
			prevHash, prevSeq, n := auditchain.GenesisHash, int64(0), 0
			for {
				page, err := next(prevSeq)
				if err != nil {
					return err
				}
				if err := auditchain.Verify(page, prevHash, prevSeq); err != nil {
					var be *auditchain.BrokenError
					if errors.As(err, &be) {
						g.emit(AuditVerification{Verified: n, BrokenAt: be.Seq, Reason: be.Reason}, func(io.Writer) {})
					}
					return err
				}
				n += len(page)
				if len(page) > 0 {
					prevHash, prevSeq = page[len(page)-1].Hash, page[len(page)-1].Seq
				}
				if len(page) < auditPage {
					break
				}
			}
			return g.emit(AuditVerification{OK: true, Verified: n, HeadSeq: prevSeq, HeadHash: prevHash}, func(w io.Writer) {
				fmt.Fprintf(w, "audit chain verified: %d entries, head %d %s\n", n, prevSeq, prevHash)
			})
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "verify this export (JSON lines) instead of the server's log")
	return cmd
}

// auditSource returns the pages to verify: the server's, or a file's.
func auditSource(cmd *cobra.Command, g *globals, file string) (func(after int64) ([]auditchain.Entry, error), error) {
	if file == "" {
		api, err := g.client()
		if err != nil {
			return nil, err
		}
		return func(after int64) ([]auditchain.Entry, error) {
			return api.AuditPage(cmd.Context(), after, "", auditPage)
		}, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, UsageError{err}
	}
	dec := json.NewDecoder(f)
	return func(int64) ([]auditchain.Entry, error) {
		var page []auditchain.Entry
		for len(page) < auditPage {
			var e auditchain.Entry
			if err := dec.Decode(&e); err == io.EOF {
				f.Close()
				break
			} else if err != nil {
				f.Close()
				return nil, fmt.Errorf("%s: entry %d is not an audit entry: %w", file, len(page)+1, err)
			}
			page = append(page, e)
		}
		return page, nil
	}, nil
}

func newAuditExportCmd(g *globals) *cobra.Command {
	var since, out string
	export := &cobra.Command{
		Use:     "export",
		Short:   "Write audit entries as JSON lines",
		Long:    "Write the audit log (from --since) as JSON lines, to --out or standard output.",
		Example: "  vigil audit export --since 2026-11-01 --out audit-2026-11.jsonl",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := g.client()
			if err != nil {
				return err
			}
			w := g.stdout
			if out != "" {
				f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
				if err != nil {
					return usagef("--out: %v (an existing export is never overwritten)", err)
				}
				defer f.Close()
				w = f
			}
			enc := json.NewEncoder(w)
			after := int64(0)
			for {
				page, err := api.AuditPage(cmd.Context(), after, since, auditPage)
				if err != nil {
					return err
				}
				for _, e := range page {
					if err := enc.Encode(e); err != nil {
						return err
					}
					after = e.Seq
				}
				if len(page) < auditPage {
					return nil
				}
			}
		},
	}
	export.Flags().StringVar(&since, "since", "", "only entries from this date (2026-11-01) or time (RFC 3339)")
	export.Flags().StringVar(&out, "out", "", "file to write (default standard output)")
	return export
}
