package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/evidencezip"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/tools/internal/repotool"
)

// MaxTextFile bounds a --text file, in bytes.
const MaxTextFile = 64 << 10

func readTextFile(flag, path string) (string, error) {
	if path == "" {
		return "", usagef("--%s is required", flag)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usagef("--%s: %v", flag, err)
	}
	if len(b) > MaxTextFile {
		return "", usagef("--%s %s is %d bytes; the limit is %d", flag, path, len(b), MaxTextFile)
	}
	return string(b), nil
}

func newReleaseRevokeCmd(g *globals) *cobra.Command {
	var o repoOptions
	var keys []string
	var reason, incident string
	var yes bool
	cmd := &cobra.Command{
		Use:   "revoke PRODUCT@VERSION --reason TEXT [--incident ID] --yes",
		Short: "Take a release out of what devices may install (re-signs the product role; needs --yes)",
		Long: `Revoke re-signs the next version of the product role without the release (its image and
SBOM) and publishes it. Devices stop seeing the release at their next metadata refresh; one
that already downloaded or staged it re-checks the signed metadata before it installs or
switches, finds it gone, and discards it. The server halts every rollout of the release.

A revoke does not move a device that already committed the release: publish a signed
recall for that (vigil release publish --version SAFE --downgrade-from BAD --incident ID).
docs/incident-response.md explains when to use which.`,
		Example: `  vigil release revoke demo-pump@1.1.0 --reason "boot loop on rev-b" --incident INC-1A2B --keys-dir keys-example --yes`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			product, version, ok := strings.Cut(args[0], "@")
			if !ok || release.ValidateProduct(product) != nil || release.ValidateVersion(version) != nil {
				return usagef("%q is not PRODUCT@VERSION", args[0])
			}
			if strings.TrimSpace(reason) == "" {
				return usagef("--reason is required (it is audited and shown on the incident's timeline)")
			}
			if err := confirm(yes, o.dryRun, "revoking "+args[0]); err != nil {
				return err
			}
			sess, err := o.session()
			if err != nil {
				return err
			}
			signers, err := o.keyset("key", keys, func(dir string) ([]string, error) { return repotool.ProductKeyFiles(dir, product), nil }, 0, "product keys")
			if err != nil {
				return err
			}
			res, err := sess.Revoke(cmd.Context(), product, version, signers, reason, incident)
			if err != nil {
				return err
			}
			return g.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "%s %s: removed %s\n%s\n", dryWord(o.dryRun, "revoked"), res.Release, strings.Join(res.Removed, ", "), versionLine(res.Versions))
			})
		},
	}
	o.register(cmd, g)
	cmd.Flags().StringArrayVar(&keys, "key", nil, "product private key file (repeat; default KEYS_DIR/product-PRODUCT.key)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required; audited)")
	cmd.Flags().StringVar(&incident, "incident", "", "the incident this revoke belongs to")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm")
	return cmd
}

func newCVDCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cvd",
		Short: "Coordinated vulnerability disclosure: the cases researchers and hospitals report",
		Long: `Reports arrive through the public intake (POST /api/v1/cvd/reports; /.well-known/security.txt
tells researchers where). Each becomes a case the maker moves through:

  received → acknowledged → triaged → confirmed → fixed → disclosed
                                    ↘ rejected | duplicate

  vigil cvd list --overdue        cases not acknowledged within cvd_ack_window
  vigil cvd ack ID                acknowledge (the reporter sees it)
  vigil cvd triage ID --note …    assessed
  vigil cvd confirm ID --note …   a real vulnerability
  vigil cvd link ID --release demo-pump@1.0.0 [--cve CVE-…]
                                  open findings on the affected releases (an internal
                                  VIGIL-… id when there is no CVE yet): exposure, triage
                                  and the 30/60-day clocks apply from here
  vigil cvd fixed ID / disclose ID
Every step is timestamped, carries who, and is audited. docs/cvd.md has the whole procedure.`,
	}
	var status string
	var overdue bool
	list := &cobra.Command{
		Use: "list [--status S] [--overdue]", Short: "List cases", Args: cobra.NoArgs, Example: "  vigil cvd list --overdue\n  vigil cvd list --status confirmed -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			l, err := c.Cases(cmd.Context(), status, overdue)
			if err != nil {
				return err
			}
			return g.emit(l, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "CASE\tSTATUS\tPRODUCT\tRECEIVED\tACK BY\tOVERDUE\tTITLE")
				for _, k := range l.Cases {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%s\n", k.ID, k.Status, k.Product, k.Received.Format(time.RFC3339), k.AckDue.Format(time.RFC3339), k.Overdue, clean(k.Title))
				}
				tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&status, "status", "", "only cases in this state")
	list.Flags().BoolVar(&overdue, "overdue", false, "only cases past their acknowledgement deadline")
	show := &cobra.Command{
		Use: "show ID", Short: "Show a case: report, history, messages", Args: cobra.ExactArgs(1), Example: "  vigil cvd show CVD-1A2B3C4D5E",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			k, err := c.Case(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.emit(k, func(w io.Writer) { printCase(w, k) })
		},
	}
	cmd.AddCommand(list, show)
	for _, t := range []struct{ use, to, short string }{
		{"ack", "acknowledged", "Acknowledge a report"}, {"triage", "triaged", "Record that a case is assessed"},
		{"confirm", "confirmed", "Confirm the vulnerability"}, {"reject", "rejected", "Reject a report (not a vulnerability)"},
		{"duplicate", "duplicate", "Close a report as a duplicate of another case (--of)"}, {"fixed", "fixed", "Record that a fix is released"},
		{"disclose", "disclosed", "Record the public disclosure"},
	} {
		cmd.AddCommand(newCVDTransitionCmd(g, t.use, t.to, t.short))
	}
	cmd.AddCommand(newCVDLinkCmd(g), newCVDReplyCmd(g))
	return cmd
}

// clean keeps untrusted report text from steering the terminal.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

func cleanBlock(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = "    " + clean(l)
	}
	return strings.Join(lines, "\n")
}

func printCase(w io.Writer, k api.CVDCase) {
	fmt.Fprintf(w, "case:          %s\nstatus:        %s\ntitle:         %s\nproduct:       %s %s\nreceived:      %s from %s\nacknowledge by: %s (overdue: %v)\n",
		k.ID, k.Status, clean(k.Title), k.Product, clean(k.Version), k.Received.Format(time.RFC3339), k.Source, k.AckDue.Format(time.RFC3339), k.Overdue)
	if k.Contact != "" {
		fmt.Fprintf(w, "contact:       %s\n", clean(k.Contact))
	}
	if k.Vulnerability != "" {
		fmt.Fprintf(w, "vulnerability: %s on %s\nfindings:      %s\n", k.Vulnerability, strings.Join(k.Releases, ", "), strings.Join(k.Findings, ", "))
	}
	fmt.Fprintf(w, "description:\n%s\n", cleanBlock(k.Description))
	for _, a := range k.Attachments {
		fmt.Fprintf(w, "attachment:    %s (%s, %d bytes, sha256 %s)\n", clean(a.Name), clean(a.MediaType), a.Size, a.SHA256)
	}
	fmt.Fprintln(w, "history:")
	for _, t := range k.History {
		fmt.Fprintf(w, "  %s  %s → %s  by %s  %s\n", t.At.Format(time.RFC3339), t.From, t.To, t.By, clean(t.Note))
	}
	for _, m := range k.Messages {
		fmt.Fprintf(w, "message %s from %s:\n%s\n", m.At.Format(time.RFC3339), clean(m.From), cleanBlock(m.Text))
	}
}

func newCVDTransitionCmd(g *globals, use, to, short string) *cobra.Command {
	var note, of string
	cmd := &cobra.Command{
		Use: use + " ID [--note TEXT]", Short: short, Args: cobra.ExactArgs(1), Example: "  vigil cvd " + use + " CVD-1A2B3C4D5E --note \"…\"" + map[bool]string{true: " --of CVD-0F0E0D0C0B"}[to == "duplicate"],
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			k, err := c.TransitionCase(cmd.Context(), args[0], api.CVDTransitionIn{To: to, Note: note, DuplicateOf: of})
			if err != nil {
				return err
			}
			return g.emit(k, func(w io.Writer) { fmt.Fprintf(w, "case %s is %s\n", k.ID, k.Status) })
		},
	}
	cmd.Flags().StringVar(&note, "note", "", "why (audited; the reporter sees the new state, not the note)")
	if to == "duplicate" {
		cmd.Flags().StringVar(&of, "of", "", "the case this one duplicates (required)")
	}
	return cmd
}

func newCVDLinkCmd(g *globals) *cobra.Command {
	var in api.CVDLinkIn
	cmd := &cobra.Command{
		Use:     "link ID --release PRODUCT@VERSION [--release …] [--cve ID] [--summary TEXT] [--known-exploited]",
		Example: "  vigil cvd link CVD-1A2B3C4D5E --release demo-pump@1.0.0 --release demo-pump@1.1.0",
		Short:   "Open findings for a confirmed case on the affected releases",
		Long: `Link a confirmed case to findings: one per affected release you name. Without --cve the
vulnerability gets an internal id (VIGIL-…); give the CVE once one is assigned. The findings
then behave like any other: vigil exposure, vigil findings triage, and the 30/60-day clocks.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(in.Releases) == 0 {
				return usagef("--release is required (repeat for every affected release)")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			k, err := c.LinkCase(cmd.Context(), args[0], in)
			if err != nil {
				return err
			}
			return g.emit(k, func(w io.Writer) {
				fmt.Fprintf(w, "case %s is %s on %s: findings %s\n", k.ID, k.Vulnerability, strings.Join(k.Releases, ", "), strings.Join(k.Findings, ", "))
			})
		},
	}
	cmd.Flags().StringArrayVar(&in.Releases, "release", nil, "an affected release, PRODUCT@VERSION (repeat)")
	cmd.Flags().StringVar(&in.Vulnerability, "cve", "", "the CVE id, once assigned")
	cmd.Flags().StringVar(&in.Summary, "summary", "", "one-line summary (default: the report's title)")
	cmd.Flags().BoolVar(&in.KEV, "known-exploited", false, "the vulnerability is exploited in the wild")
	return cmd
}

func newCVDReplyCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use: "reply ID --text FILE", Short: "Send the reporter a message on their case", Args: cobra.ExactArgs(1), Example: "  vigil cvd reply CVD-1A2B3C4D5E --text reply.txt",
		RunE: func(cmd *cobra.Command, args []string) error {
			text, err := readTextFile("text", file)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			k, err := c.ReplyCase(cmd.Context(), args[0], text)
			if err != nil {
				return err
			}
			return g.emit(k, func(w io.Writer) { fmt.Fprintf(w, "case %s: %d message(s)\n", k.ID, len(k.Messages)) })
		},
	}
	cmd.Flags().StringVar(&file, "text", "", "file with the message")
	return cmd
}

func newIncidentCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "incident",
		Short: "Incident response: open an incident, act through it, read its timeline",
		Long: `An incident ties the response to a finding or a disclosure case together. Every action taken
through it is audited with who and when, and its timeline (detection, assessment,
containment, notices, remediation, fix deployed) is read back from the audit chain:

  vigil incident open --title "KEV on 1.0.0" --severity critical --finding F-… --product demo-pump
  vigil incident halt INC-… --release demo-pump@1.1.0 --note "bad build" --yes
  vigil release revoke demo-pump@1.1.0 --reason … --incident INC-… --yes
  vigil release publish … --version 1.1.1 --incident INC-…
  vigil notice create --incident INC-… --sites all --severity critical --title … --text notice.txt
  vigil incident timeline INC-… -o json

docs/incident-response.md is the playbook.`,
	}
	var in api.IncidentIn
	open := &cobra.Command{
		Use: "open --title TEXT --severity S [--product P] [--finding ID]… [--case ID]…", Short: "Open an incident", Args: cobra.NoArgs,
		Example: "  vigil incident open --title \"Heartbleed (KEV) in demo-pump 1.0.0\" --severity critical --product demo-pump --finding F-7764df11e9bcfb0b",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			inc, err := c.OpenIncident(cmd.Context(), in)
			if err != nil {
				return err
			}
			return g.emit(inc, func(w io.Writer) { fmt.Fprintf(w, "opened %s (%s): %s\n", inc.ID, inc.Severity, clean(inc.Title)) })
		},
	}
	open.Flags().StringVar(&in.Title, "title", "", "what happened (required)")
	open.Flags().StringVar(&in.Severity, "severity", "", "low, moderate, high or critical (required)")
	open.Flags().StringVar(&in.Product, "product", "", "the product concerned")
	open.Flags().StringArrayVar(&in.Findings, "finding", nil, "a finding the incident is about (repeat)")
	open.Flags().StringArrayVar(&in.Cases, "case", nil, "a disclosure case the incident is about (repeat)")
	var status string
	list := &cobra.Command{
		Use: "list [--status open|closed]", Short: "List incidents", Args: cobra.NoArgs, Example: "  vigil incident list --status open",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			l, err := c.Incidents(cmd.Context(), status)
			if err != nil {
				return err
			}
			return g.emit(l, func(w io.Writer) {
				for _, i := range l.Incidents {
					fmt.Fprintf(w, "%s  %-8s %-8s %s  %s\n", i.ID, i.Status, i.Severity, i.Opened.Format(time.RFC3339), clean(i.Title))
				}
			})
		},
	}
	list.Flags().StringVar(&status, "status", "", "open or closed")
	timeline := &cobra.Command{
		Use: "timeline ID", Short: "The incident's timeline, from the audit chain (-o json for an FDA report)", Args: cobra.ExactArgs(1), Example: "  vigil incident timeline INC-8DB8073098 -o json > timeline.json",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			tl, err := c.Timeline(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.emit(tl, func(w io.Writer) {
				fmt.Fprintf(w, "%s (%s, %s): %s\n", tl.Incident.ID, tl.Incident.Severity, tl.Incident.Status, clean(tl.Incident.Title))
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SEQ\tTIME\tPHASE\tACTION\tSUBJECT\tBY")
				for _, e := range tl.Entries {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format(time.RFC3339), e.Phase, e.Action, e.Subject, e.Actor)
				}
				tw.Flush()
			})
		},
	}
	show := &cobra.Command{
		Use: "show ID", Short: "Show an incident and what it links", Args: cobra.ExactArgs(1), Example: "  vigil incident show INC-8DB8073098",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			i, err := c.Incident(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.emit(i, func(w io.Writer) {
				fmt.Fprintf(w, "%s %s %s opened %s by %s: %s\nfindings: %s\ncases:    %s\nreleases: %s\nnotices:  %s\n", i.ID, i.Status, i.Severity,
					i.Opened.Format(time.RFC3339), i.OpenedBy, clean(i.Title), strings.Join(i.Findings, " "), strings.Join(i.Cases, " "),
					strings.Join(i.Releases, " "), strings.Join(i.Notices, " "))
			})
		},
	}
	cmd.AddCommand(open, list, show, timeline,
		newIncidentActionCmd(g, "halt ID --release PRODUCT@VERSION --note TEXT --yes", api.ActionHalt, "Halt every rollout of a release, through the incident", true),
		newIncidentActionCmd(g, "pause ID --product P --note TEXT --yes", api.ActionPauseProduct, "Pause every active rollout of a product", true),
		newIncidentActionCmd(g, "link ID (--release R | --finding F | --case C) [--note TEXT]", api.ActionLink, "Link a release (a fix, a recall), a finding or a case", false),
		newIncidentActionCmd(g, "note ID --note TEXT", api.ActionNote, "Record an assessment or a decision on the timeline", false),
		newIncidentActionCmd(g, "close ID [--note TEXT] --yes", api.ActionClose, "Close the incident", true))
	return cmd
}

func newIncidentActionCmd(g *globals, use, action, short string, needsYes bool) *cobra.Command {
	var a api.IncidentAction
	var yes bool
	cmd := &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1), Example: "  vigil incident " + strings.Replace(use, " ID ", " INC-8DB8073098 ", 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if needsYes {
				if err := confirm(yes, false, action+" in incident "+args[0]); err != nil {
					return err
				}
			}
			a.Action = action
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.IncidentAct(cmd.Context(), args[0], a)
			if err != nil {
				return err
			}
			return g.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "%s: %s done", res.Incident.ID, action)
				if len(res.Rollouts) > 0 {
					fmt.Fprintf(w, " (rollouts %s)", strings.Join(res.Rollouts, " "))
				}
				fmt.Fprintln(w)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&a.Note, "note", "", "why (audited)")
	switch action {
	case api.ActionHalt:
		f.StringVar(&a.Release, "release", "", "PRODUCT@VERSION")
	case api.ActionPauseProduct:
		f.StringVar(&a.Product, "product", "", "the product")
	case api.ActionLink:
		f.StringVar(&a.Release, "release", "", "PRODUCT@VERSION")
		f.StringVar(&a.Finding, "finding", "", "finding id")
		f.StringVar(&a.Case, "case", "", "disclosure case id")
	}
	if needsYes {
		f.BoolVar(&yes, "yes", false, "confirm")
	}
	return cmd
}

func newNoticeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "notice",
		Short: "Customer notices to hospitals: send, list, acknowledge",
		Long: `A notice tells hospitals about a finding or an incident and what to do. Each site gets it
in the API (site IT: vigil notice list), on its webhook (HMAC-signed, retried with backoff)
and, with an SMTP relay configured, by e-mail; each site acknowledges it. A notice about a
finding stops the finding's 30-day notice clock.

  vigil site contacts st-mary --webhook-url https://it.st-mary.example/vigil --webhook-secret-file s.txt --email it@st-mary.example
  vigil notice create --finding F-… --sites all --severity high --title … --text notice.txt --yes
  vigil notice list --unacked            (site IT sees its own sites only)
  vigil notice ack N-… [--site st-mary] [--comment …]`,
	}
	var in api.NoticeIn
	var sites, textFile string
	var yes bool
	create := &cobra.Command{
		Use: "create (--finding ID | --incident ID) --sites all|S1,S2 --severity S --title T --text FILE --yes", Short: "Send a notice", Args: cobra.NoArgs,
		Example: "  vigil notice create --incident INC-8DB8073098 --sites all --severity critical --title \"Update demo-pump to 1.1.1\" --text notice.txt --yes",
		RunE: func(cmd *cobra.Command, _ []string) error {
			text, err := readTextFile("text", textFile)
			if err != nil {
				return err
			}
			if sites == "" {
				return usagef("--sites is required: all, or site names separated by commas")
			}
			in.Text, in.Sites = text, repotool.SplitList(sites)
			if err := confirm(yes, false, "sending a notice to "+sites); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			n, err := c.CreateNotice(cmd.Context(), in)
			if err != nil {
				return err
			}
			return g.emit(n, func(w io.Writer) { printNotice(w, n) })
		},
	}
	f := create.Flags()
	f.StringVar(&in.Finding, "finding", "", "the finding the notice is about")
	f.StringVar(&in.Incident, "incident", "", "the incident the notice is about")
	f.StringVar(&sites, "sites", "", "all, or site names separated by commas")
	f.StringVar(&in.Severity, "severity", "", "low, moderate, high or critical")
	f.StringVar(&in.Title, "title", "", "one line")
	f.StringVar(&textFile, "text", "", "file with the notice text")
	f.BoolVar(&yes, "yes", false, "confirm (a notice cannot be recalled)")
	var unacked, overdue bool
	list := &cobra.Command{
		Use: "list [--unacked] [--overdue]", Short: "List notices (site IT: its own sites)", Args: cobra.NoArgs, Example: "  vigil notice list --unacked",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			l, err := c.Notices(cmd.Context(), unacked, overdue)
			if err != nil {
				return err
			}
			return g.emit(l, func(w io.Writer) {
				for _, n := range l.Notices {
					printNotice(w, n)
				}
			})
		},
	}
	list.Flags().BoolVar(&unacked, "unacked", false, "only notices a site has not acknowledged")
	list.Flags().BoolVar(&overdue, "overdue", false, "only notices unacknowledged past notice_ack_window")
	var ack api.NoticeAckIn
	ackCmd := &cobra.Command{
		Use: "ack ID [--site S] [--comment TEXT]", Short: "Acknowledge a notice for a site", Args: cobra.ExactArgs(1), Example: "  vigil notice ack N-E0AF45AED0 --comment \"pumps moved off the guest network\"",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			n, err := c.AckNotice(cmd.Context(), args[0], ack)
			if err != nil {
				return err
			}
			return g.emit(n, func(w io.Writer) { printNotice(w, n) })
		},
	}
	ackCmd.Flags().StringVar(&ack.Site, "site", "", "the site acknowledging (default: the token's only site)")
	ackCmd.Flags().StringVar(&ack.Comment, "comment", "", "what the site did")
	cmd.AddCommand(create, list, ackCmd, newSiteContactsCmd(g))
	return cmd
}

func printNotice(w io.Writer, n api.Notice) {
	about := "finding " + n.Finding
	if n.Incident != "" {
		about = "incident " + n.Incident
	}
	fmt.Fprintf(w, "%s [%s] %s (%s, %s by %s)\n", n.ID, n.Severity, clean(n.Title), about, n.Created.Format(time.RFC3339), n.CreatedBy)
	for _, d := range n.Deliveries {
		ack := "unacknowledged"
		if !d.Acked.IsZero() {
			ack = "acknowledged " + d.Acked.Format(time.RFC3339) + " by " + d.AckedBy
		}
		fmt.Fprintf(w, "  %-16s webhook %s (%d)  e-mail %s (%d)  %s\n", d.Site, d.Webhook, d.WebhookTries, d.Email, d.EmailTries, ack)
	}
}

func newSiteContactsCmd(g *globals) *cobra.Command {
	var in api.SiteContacts
	var secretFile string
	cmd := &cobra.Command{
		Use: "contacts SITE [--webhook-url URL --webhook-secret-file FILE] [--email ADDRESS]", Short: "Set where a site's notices go", Args: cobra.ExactArgs(1),
		Example: "  vigil notice contacts st-mary --webhook-url https://it.st-mary.example/vigil --webhook-secret-file secret.txt --email biomed@st-mary.example",
		RunE: func(cmd *cobra.Command, args []string) error {
			if secretFile != "" {
				b, err := os.ReadFile(secretFile)
				if err != nil {
					return usagef("--webhook-secret-file: %v", err)
				}
				in.WebhookSecret = string(bytes.TrimSpace(b))
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.PutSiteContacts(cmd.Context(), args[0], in); err != nil {
				return err
			}
			return g.emit(map[string]string{"site": args[0]}, func(w io.Writer) { fmt.Fprintf(w, "notice contacts of %s saved\n", args[0]) })
		},
	}
	cmd.Flags().StringVar(&in.WebhookURL, "webhook-url", "", "http(s) URL that receives notices (JSON, HMAC-signed)")
	cmd.Flags().StringVar(&secretFile, "webhook-secret-file", "", "file holding the webhook's HMAC secret (at least 16 bytes)")
	cmd.Flags().StringVar(&in.Email, "email", "", "address notices are mailed to")
	return cmd
}

func newReportCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "report", Short: "Fleet reports"}
	var product string
	patching := &cobra.Command{
		Use:     "patching [--product P]",
		Example: "  vigil report patching --product demo-pump -o json",
		Short:   "Per release: devices eligible and committed, publish-to-commit time; per site: share on a clean release",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			r, err := c.PatchingReport(cmd.Context(), product)
			if err != nil {
				return err
			}
			return g.emit(r, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "RELEASE\tPUBLISHED\tELIGIBLE\tCOMMITTED\tMEDIAN H\tP90 H\tREVOKED")
				for _, m := range r.Releases {
					rev := ""
					if !m.Revoked.IsZero() {
						rev = m.Revoked.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", m.Release, m.Published.Format(time.RFC3339), m.Eligible, m.Committed, hours(m.MedianHours), hours(m.P90Hours), rev)
				}
				tw.Flush()
				tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SITE\tDEVICES\tON A CLEAN RELEASE\tSHARE")
				for _, s := range r.Sites {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f%%\n", s.Site, s.Devices, s.Clean, 100*s.Share)
				}
				tw.Flush()
			})
		},
	}
	patching.Flags().StringVar(&product, "product", "", "one product (default: all)")
	cmd.AddCommand(patching)
	return cmd
}

func hours(h *float64) string {
	if h == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *h)
}

func newEvidenceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "Export an evidence bundle for an auditor, and verify one offline",
		Long: `An evidence bundle is a zip of every record of a period: SBOMs and VEX of the releases
published in it, findings with triage and clocks, disclosure cases, incidents with their
timelines, notices with delivery and acknowledgement, rollouts, the patching report, and the
audit-chain segment with its verification. manifest.json lists every file with its SHA-256;
'vigil evidence verify' checks all of it offline and names any file that differs.`,
	}
	var since, until, out string
	export := &cobra.Command{
		Use: "export --since T --until T --out FILE.zip", Short: "Export the bundle of a period", Args: cobra.NoArgs, Example: "  vigil evidence export --since 2026-01-01T00:00:00Z --until 2027-01-01T00:00:00Z --out evidence-2026.zip",
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := time.Parse(time.RFC3339, since)
			if err != nil {
				return usagef("--since %q is not RFC 3339 (2026-01-01T00:00:00Z)", since)
			}
			u, err := time.Parse(time.RFC3339, until)
			if err != nil {
				return usagef("--until %q is not RFC 3339 (2026-12-31T00:00:00Z)", until)
			}
			if out == "" {
				return usagef("--out is required")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			b, err := c.Evidence(cmd.Context(), s, u)
			if err != nil {
				return err
			}
			res, err := evidencezip.Verify(bytes.NewReader(b), int64(len(b)))
			if err != nil || !res.OK() {
				return fmt.Errorf("the server's bundle does not verify (%v %v); nothing written", err, res.Problems)
			}
			if err := writeFileAtomic(out, b); err != nil {
				return err
			}
			return g.emit(res.Manifest, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %s: %d files, audit entries %d..%d (chain verified: %v)\n", out, len(res.Manifest.Files), res.Manifest.Chain.FirstSeq,
					res.Manifest.Chain.LastSeq, res.Manifest.Chain.Verified)
			})
		},
	}
	export.Flags().StringVar(&since, "since", "", "start of the period (RFC 3339)")
	export.Flags().StringVar(&until, "until", "", "end of the period, exclusive (RFC 3339)")
	export.Flags().StringVar(&out, "out", "", "the zip to write")
	verify := &cobra.Command{
		Use: "verify FILE.zip", Short: "Verify a bundle offline (exit 3 when a file was changed)", Args: cobra.ExactArgs(1), Example: "  vigil evidence verify evidence-2026.zip",
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return usagef("%v", err)
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			res, err := evidencezip.Verify(f, st.Size())
			if err != nil {
				return VerificationError{fmt.Errorf("%s: %w", args[0], err)}
			}
			if err := g.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "%s: %d files checked, audit entries %d..%d\n", args[0], res.Files, res.Manifest.Chain.FirstSeq, res.Manifest.Chain.LastSeq)
				for _, p := range res.Problems {
					fmt.Fprintf(w, "TAMPERED %s: %s\n", p.File, p.Reason)
				}
			}); err != nil {
				return err
			}
			if !res.OK() {
				return VerificationError{fmt.Errorf("%s does not verify: %s: %s", args[0], res.Problems[0].File, res.Problems[0].Reason)}
			}
			return nil
		},
	}
	cmd.AddCommand(export, verify)
	return cmd
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".partial"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
