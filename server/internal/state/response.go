package state

import (
	"context"
	"time"
)

// Doc is one record of the incident-response areas (disclosure cases,
// incidents, customer notices and their deliveries, site contacts): the
// record as its owner shapes it (Data, JSON) and the few fields the store
// filters and sorts by. Rev is the revision the record was read at: an
// update whose Rev is not the stored one is refused (Conflict), so two
// replicas never overwrite each other's change.
type Doc struct {
	ID string
	// Status is the record's state (a case's "received", a delivery's
	// "unacked"): what listings filter by.
	Status string
	// Key is the record's second lookup: a case's source address, an
	// incident's product, a notice's incident or finding, a delivery's site.
	Key     string
	Created time.Time
	Updated time.Time
	// Due is when the record next needs attention (a case's acknowledgement
	// deadline, a delivery's next attempt); zero: nothing due.
	Due  time.Time
	Rev  int64
	Data []byte
}

// DocFilter selects records; empty fields select all. Records come oldest
// first (by Created, then ID).
type DocFilter struct {
	Status string
	// NotStatus excludes a status (e.g. closed incidents).
	NotStatus string
	Key       string
	Keys      []string
	// IDPrefix selects ids that start with it (a notice's deliveries).
	IDPrefix string
	// Since and Until bound Created (Until exclusive).
	Since, Until time.Time
	// DueBefore selects records with a non-zero Due at or before it.
	DueBefore time.Time
	Limit     int
}

// Attachment is a file a reporter attached to a disclosure case.
type Attachment struct {
	Case      string
	Index     int
	Name      string
	MediaType string
	SHA256    string
	Data      []byte
}

// CaseStore keeps coordinated-disclosure cases (cvd).
type CaseStore interface {
	// CreateCase stores a new case and its attachments in one transaction
	// (Conflict if the id exists).
	CreateCase(ctx context.Context, c Doc, atts []Attachment) error
	Case(ctx context.Context, id string) (Doc, error)
	// UpdateCase writes c if the stored revision is c.Rev; it returns the
	// new revision.
	UpdateCase(ctx context.Context, c Doc) (int64, error)
	Cases(ctx context.Context, f DocFilter) ([]Doc, error)
	CaseAttachments(ctx context.Context, id string) ([]Attachment, error)
}

// IncidentStore keeps incidents (incident).
type IncidentStore interface {
	CreateIncident(ctx context.Context, in Doc) error
	Incident(ctx context.Context, id string) (Doc, error)
	UpdateIncident(ctx context.Context, in Doc) (int64, error)
	Incidents(ctx context.Context, f DocFilter) ([]Doc, error)
}

// NoticeStore keeps customer notices, one delivery per site, and each
// site's notice contacts (notice).
type NoticeStore interface {
	// CreateNotice stores a notice and its deliveries in one transaction.
	CreateNotice(ctx context.Context, n Doc, deliveries []Doc) error
	Notice(ctx context.Context, id string) (Doc, error)
	Notices(ctx context.Context, f DocFilter) ([]Doc, error)
	Deliveries(ctx context.Context, f DocFilter) ([]Doc, error)
	UpdateDelivery(ctx context.Context, d Doc) (int64, error)
	// PutSiteContact stores (replaces) a site's contacts, ID = site.
	PutSiteContact(ctx context.Context, c Doc) error
	SiteContact(ctx context.Context, site string) (Doc, error)
}

// ReleaseNote is when a release entered, and when it left, the signed
// product role.
type ReleaseNote struct {
	Product, Version, Target string
	Published                time.Time
	Revoked                  time.Time // zero: still published
}

// ReleaseHistory lists releases as they were published and revoked.
type ReleaseHistory interface {
	// Releases lists a product's releases (every product when product is
	// empty), ordered by product and publish time.
	Releases(ctx context.Context, product string) ([]ReleaseNote, error)
}

// CommitTime is when a device first reported a release committed.
type CommitTime struct {
	Device, Site, Version string
	At                    time.Time
}

// CommitLog reads commit times from the device events (the patching
// report).
type CommitLog interface {
	// CommitTimes lists, for each device of product and each version, the
	// first committed event.
	CommitTimes(ctx context.Context, product string) ([]CommitTime, error)
}
