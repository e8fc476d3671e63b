package rollout

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/internal/release"
)

// Window is a weekly maintenance window in a site's time zone, e.g.
// "Sun 02:00-05:00 America/Chicago". A window may cross midnight
// ("Sat 23:00-02:00 …" runs into Sunday).
type Window struct {
	Day      time.Weekday
	Start    time.Duration // since local midnight
	End      time.Duration
	Location *time.Location
	text     string
}

func (w Window) String() string { return w.text }

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ParseWindow reads "DAY HH:MM-HH:MM ZONE".
func ParseWindow(s string) (Window, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return Window{}, fmt.Errorf("window %q is not DAY HH:MM-HH:MM ZONE (e.g. Sun 02:00-05:00 America/Chicago)", s)
	}
	day, ok := weekdays[strings.ToLower(f[0])[:min(3, len(f[0]))]]
	if !ok || len(f[0]) < 3 {
		return Window{}, fmt.Errorf("window %q: %q is not a weekday", s, f[0])
	}
	a, b, ok := strings.Cut(f[1], "-")
	if !ok {
		return Window{}, fmt.Errorf("window %q: %q is not HH:MM-HH:MM", s, f[1])
	}
	start, err1 := clock(a)
	end, err2 := clock(b)
	if err1 != nil || err2 != nil || start == end {
		return Window{}, fmt.Errorf("window %q: %q is not a non-empty HH:MM-HH:MM", s, f[1])
	}
	loc, err := time.LoadLocation(f[2])
	if err != nil {
		return Window{}, fmt.Errorf("window %q: time zone %q: %v", s, f[2], err)
	}
	return Window{Day: day, Start: start, End: end, Location: loc, text: s}, nil
}

func clock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, err
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// Contains reports whether instant t falls in the window.
func (w Window) Contains(t time.Time) bool {
	local := t.In(w.Location)
	since := time.Duration(local.Hour())*time.Hour + time.Duration(local.Minute())*time.Minute + time.Duration(local.Second())*time.Second
	if w.Start < w.End {
		return local.Weekday() == w.Day && since >= w.Start && since < w.End
	}
	// Crosses midnight: from Start on Day to End on the next day.
	next := (w.Day + 1) % 7
	return (local.Weekday() == w.Day && since >= w.Start) || (local.Weekday() == next && since < w.End)
}

// Site is a hospital site: its windows, care areas, caps and policy.
type Site struct {
	Name      string
	TimeZone  string
	Windows   []Window
	CareAreas []string
	// SiteCap and CareAreaCap bound devices installing at once (0: no cap).
	SiteCap     int
	CareAreaCap int
	// AutoApprove lists severities the site's standing policy approves
	// without a person (e.g. critical).
	AutoApprove []string
}

// ParsePolicy reads "auto-approve: critical,security" (or "none").
func ParsePolicy(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil, nil
	}
	v, ok := strings.CutPrefix(s, "auto-approve:")
	if !ok {
		return nil, fmt.Errorf("policy %q is not auto-approve: SEVERITY[,SEVERITY] or none", s)
	}
	var out []string
	for _, sev := range strings.Split(v, ",") {
		sev = strings.TrimSpace(sev)
		switch sev {
		case release.SeverityRoutine, release.SeveritySecurity, release.SeverityCritical:
			out = append(out, sev)
		default:
			return nil, fmt.Errorf("policy: %q is not routine, security or critical", sev)
		}
	}
	return out, nil
}

// InWindow reports whether t is inside one of the site's windows; a site
// without windows accepts any time.
func (s *Site) InWindow(t time.Time) bool {
	if len(s.Windows) == 0 {
		return true
	}
	for _, w := range s.Windows {
		if w.Contains(t) {
			return true
		}
	}
	return false
}

// AutoApproves reports whether the site's policy approves severity sev.
func (s *Site) AutoApproves(sev string) bool { return slices.Contains(s.AutoApprove, sev) }
