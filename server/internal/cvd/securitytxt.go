package cvd

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// SecurityTxt is the server's /.well-known/security.txt (RFC 9116), from
// the configuration.
type SecurityTxt struct {
	Contacts        []string // mailto:, https: or tel: URIs (at least one)
	Expires         time.Time
	Policy          string // https URL of the disclosure policy
	Acknowledgments string
	Languages       string // e.g. "en, de"
	Canonical       string // https URL where this file is served
}

// MaxSecurityTxtLifetime: RFC 9116 §2.5.5 recommends an Expires less than
// a year ahead.
const MaxSecurityTxtLifetime = 366 * 24 * time.Hour

// Validate checks the file at now: a contact, absolute URIs, and an
// Expires in the future (a server refuses to start with an expired one).
func (t SecurityTxt) Validate(now time.Time) error {
	if len(t.Contacts) == 0 {
		return fmt.Errorf("security.txt needs at least one Contact")
	}
	for _, c := range t.Contacts {
		u, err := url.Parse(c)
		if err != nil || (u.Scheme != "mailto" && u.Scheme != "https" && u.Scheme != "tel") {
			return fmt.Errorf("Contact %q is not a mailto:, https: or tel: URI", c)
		}
	}
	switch {
	case t.Expires.IsZero():
		return fmt.Errorf("security.txt needs an Expires date (RFC 3339)")
	case !t.Expires.After(now):
		return fmt.Errorf("security.txt expired on %s; set a new date, less than a year ahead", t.Expires.Format(time.RFC3339))
	case t.Expires.After(now.Add(MaxSecurityTxtLifetime)):
		return fmt.Errorf("security.txt Expires %s is more than a year ahead (RFC 9116 §2.5.5)", t.Expires.Format(time.RFC3339))
	}
	for name, v := range map[string]string{"Policy": t.Policy, "Acknowledgments": t.Acknowledgments, "Canonical": t.Canonical} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("%s %q is not an https URL", name, v)
		}
	}
	if strings.ContainsAny(t.Languages, "\r\n") {
		return fmt.Errorf("Preferred-Languages holds a line break")
	}
	return nil
}

// Render writes the file.
func (t SecurityTxt) Render() string {
	var b strings.Builder
	b.WriteString("# Coordinated vulnerability disclosure: report through the Contact below or\n# POST /api/v1/cvd/reports (docs/cvd.md).\n")
	for _, c := range t.Contacts {
		fmt.Fprintf(&b, "Contact: %s\n", c)
	}
	fmt.Fprintf(&b, "Expires: %s\n", t.Expires.UTC().Format(time.RFC3339))
	for _, f := range [][2]string{{"Policy", t.Policy}, {"Acknowledgments", t.Acknowledgments}, {"Preferred-Languages", t.Languages}, {"Canonical", t.Canonical}} {
		if f[1] != "" {
			fmt.Fprintf(&b, "%s: %s\n", f[0], f[1])
		}
	}
	return b.String()
}
