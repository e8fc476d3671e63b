package fleet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/devicesig"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/input"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/rollout"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Registry limits, with their units.
const (
	// MaxImportRows bounds one CSV import.
	MaxImportRows = 100000
	// MaxWindows and MaxCareAreas bound a site's lists; MaxCap its caps.
	MaxWindows   = 64
	MaxCareAreas = 256
	MaxCap       = 1_000_000
	// MaxTags bounds a device's tags.
	MaxTags = 32
	// MaxUDIDI bounds a UDI device identifier, in bytes (GS1 GTIN-14 and
	// HIBCC fit easily).
	MaxUDIDI = 64
)

var deviceID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// Registry keeps hospital sites and registered devices (the package doc
// has its rules).
type Registry struct {
	reg    state.RegistryStore
	events state.EventStore
	cache  *cache
	rec    recorder
	clock  *clock
}

// scoped refuses a site-scoped operator acting on another site.
func scoped(ctx context.Context, site string) error {
	if p, ok := operator.From(ctx); ok && !p.CanSite(site) {
		return apperr.New(apperr.Forbidden, "your token is limited to sites %v; %q is not one of them", p.Sites, site)
	}
	return nil
}

func siteFromState(st state.Site) api.Site {
	return api.Site{Name: st.Name, TimeZone: st.TimeZone, Windows: st.Windows, CareAreas: st.CareAreas, SiteCap: st.SiteCap, CareAreaCap: st.CareAreaCap, Policy: policyString(st.AutoApprove)}
}

func toSite(in api.Site) (*rollout.Site, error) {
	if err := input.Identifier("site name", in.Name); err != nil {
		return nil, withField(err, "name")
	}
	// "Local" would mean the server's own zone, which differs between
	// replicas and moves with the host: a site names its real zone.
	if _, err := time.LoadLocation(in.TimeZone); err != nil || in.TimeZone == "" || in.TimeZone == "Local" {
		return nil, apperr.New(apperr.Invalid, "site %s: time zone %q is not an IANA zone such as America/Chicago", in.Name, in.TimeZone).WithField("time_zone")
	}
	if len(in.Windows) > MaxWindows {
		return nil, apperr.New(apperr.TooLarge, "site %s: at most %d maintenance windows", in.Name, MaxWindows).WithField("windows")
	}
	if len(in.CareAreas) > MaxCareAreas {
		return nil, apperr.New(apperr.TooLarge, "site %s: at most %d care areas", in.Name, MaxCareAreas).WithField("care_areas")
	}
	for _, a := range in.CareAreas {
		if err := input.Required("site "+in.Name+": care area", a, input.MaxName); err != nil {
			return nil, withField(err, "care_areas")
		}
	}
	for _, c := range []struct {
		field string
		v     int
	}{{"site_cap", in.SiteCap}, {"care_area_cap", in.CareAreaCap}} {
		if c.v < 0 || c.v > MaxCap {
			return nil, apperr.New(apperr.Invalid, "site %s: %s %d is not between 0 and %d", in.Name, c.field, c.v, MaxCap).WithField(c.field)
		}
	}
	site := &rollout.Site{Name: in.Name, TimeZone: in.TimeZone, CareAreas: in.CareAreas, SiteCap: in.SiteCap, CareAreaCap: in.CareAreaCap}
	for _, w := range in.Windows {
		win, err := rollout.ParseWindow(w)
		if err != nil {
			return nil, apperr.New(apperr.Invalid, "site %s: %v", in.Name, err).WithField("windows")
		}
		site.Windows = append(site.Windows, win)
	}
	aa, err := rollout.ParsePolicy(in.Policy)
	if err != nil {
		return nil, apperr.New(apperr.Invalid, "site %s: %v", in.Name, err).WithField("policy")
	}
	site.AutoApprove = aa
	return site, nil
}

// withField names the field of an input error.
func withField(err error, field string) error {
	var e *apperr.Error
	if errors.As(err, &e) {
		return e.WithField(field)
	}
	return apperr.Wrap(err, apperr.Invalid, "%v", err).WithField(field)
}

// PutSite creates or updates a site.
func (r *Registry) PutSite(ctx context.Context, in api.Site) error {
	if err := scoped(ctx, in.Name); err != nil {
		return err
	}
	site, err := toSite(in)
	if err != nil {
		return err
	}
	if err := r.reg.PutSite(ctx, state.Site{Name: site.Name, TimeZone: site.TimeZone, Windows: in.Windows, CareAreas: in.CareAreas,
		SiteCap: in.SiteCap, CareAreaCap: in.CareAreaCap, AutoApprove: site.AutoApprove}); err != nil {
		return err
	}
	r.cache.forceRefresh()
	r.rec.record(ctx, "site.put", in.Name, in)
	return nil
}

// validateDevice checks one device's fields and writes its public key in
// the registered form (base64 of the raw key), whichever form it came in.
func validateDevice(in *api.Device) error {
	if err := input.Line("udi_di", in.UDIDI, MaxUDIDI); err != nil {
		return err
	}
	if err := input.Line("care_area", in.CareArea, input.MaxName); err != nil {
		return err
	}
	if len(in.Tags) > MaxTags {
		return fmt.Errorf("more than %d tags", MaxTags)
	}
	for _, tag := range in.Tags {
		if err := input.Required("tag", tag, input.MaxName); err != nil {
			return err
		}
	}
	switch {
	case !deviceID.MatchString(in.ID):
		return fmt.Errorf("id %q is not a device id", in.ID)
	case release.ValidateProduct(in.Product) != nil:
		return fmt.Errorf("product %q is not a product name", in.Product)
	case in.Hardware == "":
		return errors.New("hardware is empty")
	case in.Site == "":
		return errors.New("site is empty")
	case in.Installed != "" && release.ValidateVersion(in.Installed) != nil:
		return fmt.Errorf("installed_version %q is not semver", in.Installed)
	}
	k, err := devicesig.ParsePublicKey(in.PublicKey)
	if err != nil {
		return fmt.Errorf("public_key: %v", err)
	}
	in.PublicKey = devicesig.EncodePublicKey(k)
	return nil
}

// RegisterDevices registers devices, all or none.
func (r *Registry) RegisterDevices(ctx context.Context, ins []api.Device) error {
	if len(ins) == 0 {
		return apperr.New(apperr.Invalid, "no devices given")
	}
	seen := map[string]int{}
	ds := make([]state.Device, 0, len(ins))
	for i, in := range ins {
		if err := validateDevice(&in); err != nil {
			return apperr.New(apperr.Invalid, "device %d (%s): %v", i+1, in.ID, err)
		}
		if prev, dup := seen[in.ID]; dup {
			return apperr.New(apperr.Invalid, "device %s is listed twice (entries %d and %d)", in.ID, prev, i+1)
		}
		seen[in.ID] = i + 1
		ds = append(ds, state.Device{ID: in.ID, UDIDI: in.UDIDI, Product: in.Product, Hardware: in.Hardware, Site: in.Site,
			CareArea: in.CareArea, Tags: in.Tags, PublicKey: in.PublicKey, Installed: in.Installed})
	}
	if err := r.reg.AddDevices(ctx, ds); err != nil {
		return err
	}
	r.cache.forceRefresh()
	r.rec.record(ctx, "device.register", registeredSubject(ds), map[string]int{"count": len(ds)})
	return nil
}

// MaxAuditedDeviceIDs bounds the ids an audit entry of a registration
// names; a larger import is named by its count, first and last id and the
// SHA-256 of its id list (one id per line, in import order), so a
// million-device import does not write a 20 MB audit entry.
const MaxAuditedDeviceIDs = 1000

func registeredSubject(ds []state.Device) string {
	ids := make([]string, 0, len(ds))
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	if len(ids) <= MaxAuditedDeviceIDs {
		return strings.Join(ids, ",")
	}
	h := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	return fmt.Sprintf("%d devices %s…%s ids-sha256:%x", len(ids), ids[0], ids[len(ids)-1], h)
}

// CSVColumns is the header `vigil device import` expects.
var CSVColumns = []string{"id", "udi_di", "product", "hardware", "site", "care_area", "tags", "public_key", "installed_version"}

// ParseCSV reads devices from CSV, validating row by row; errors name the
// line. It returns each device's line. Tags are separated by '|' (as in
// rollout selections and `vigil device register --tags`); public_key is the
// PEM file `vigil keys generate` wrote (a quoted, multi-line cell), its
// base64 body, or the base64 raw key.
//
// Hostile input (finding 11): a cell that starts with = + - @ (a formula to
// any spreadsheet that later opens an export) or holds a control character
// is refused; a UTF-8 byte-order mark (as spreadsheets write) is skipped.
func ParseCSV(r io.Reader) ([]api.Device, []int, error) {
	br := bufio.NewReader(r)
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte{0xEF, 0xBB, 0xBF}) {
		br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = len(CSVColumns)
	header, err := cr.Read()
	if err != nil {
		return nil, nil, apperr.New(apperr.Invalid, "line 1: cannot read the header: %v", err)
	}
	if !slices.Equal(header, CSVColumns) {
		return nil, nil, apperr.New(apperr.Invalid, "line 1: header is %q, want %q", strings.Join(header, ","), strings.Join(CSVColumns, ","))
	}
	var out []api.Device
	var lines []int
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// (FieldPos panics after a failed Read: found by fuzzing.)
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, nil, apperr.New(apperr.Invalid, "line %d: %v", pe.Line, pe.Err)
			}
			return nil, nil, apperr.New(apperr.Invalid, "reading the CSV: %v", err)
		}
		line, _ := cr.FieldPos(0)
		if len(out) >= MaxImportRows {
			return nil, nil, apperr.New(apperr.TooLarge, "more than %d devices in one import", MaxImportRows)
		}
		for i, cell := range rec {
			if err := csvCell(CSVColumns[i], cell); err != nil {
				return nil, nil, apperr.New(apperr.Invalid, "line %d: %v", line, err)
			}
		}
		in := api.Device{ID: rec[0], UDIDI: rec[1], Product: rec[2], Hardware: rec[3], Site: rec[4], CareArea: rec[5], PublicKey: rec[7], Installed: rec[8]}
		if rec[6] != "" {
			in.Tags = strings.Split(rec[6], "|")
		}
		if err := validateDevice(&in); err != nil {
			return nil, nil, apperr.New(apperr.Invalid, "line %d: %v", line, err)
		}
		out, lines = append(out, in), append(lines, line)
	}
	if len(out) == 0 {
		return nil, nil, apperr.New(apperr.Invalid, "the file lists no devices")
	}
	return out, lines, nil
}

// hibccUDI is a HIBCC UDI device identifier, which starts with '+'.
var hibccUDI = regexp.MustCompile(`^\+[A-Z][A-Z0-9]{3}[A-Z0-9$/.%-]{1,60}$`)

// csvCell applies the formula rule to the free-text cells; the structured
// ones (id, product, version, key, UDI) have their own stricter rules.
func csvCell(column, v string) error {
	switch column {
	case "public_key":
		return input.Text(column, v, devicesig.MaxPublicKeyText)
	case "id", "product", "installed_version":
		return input.Line(column, v, input.MaxComment)
	case "udi_di":
		if hibccUDI.MatchString(v) {
			return nil
		}
	}
	return input.CSVCell(column, v)
}

// ImportDevices registers the devices of an import: a row that matches the
// registered device (same UDI-DI, product, hardware, site, care area, tags
// and key; the installed version moves by itself) changes nothing, so an
// import can be run again; a row that differs is an error naming its line
// and field; new devices are registered all or none.
func (r *Registry) ImportDevices(ctx context.Context, ins []api.Device, lines []int) (api.DevicesRegistered, error) {
	var fresh []api.Device
	unchanged := 0
	for i, in := range ins {
		cur, err := r.reg.Device(ctx, in.ID)
		if apperr.Is(err, apperr.NotFound) {
			fresh = append(fresh, in)
			continue
		}
		if err != nil {
			return api.DevicesRegistered{}, err
		}
		if field := differs(cur, in); field != "" {
			return api.DevicesRegistered{}, apperr.New(apperr.Conflict, "line %d: device %s is registered with another %s; change a registered device by decommissioning it and registering a new id",
				lines[i], in.ID, field).WithCode(api.CodeDeviceExists)
		}
		unchanged++
	}
	out := api.DevicesRegistered{Registered: len(fresh), Unchanged: unchanged}
	if len(fresh) == 0 {
		return out, nil
	}
	return out, r.RegisterDevices(ctx, fresh)
}

// differs names the first registration field in which in differs from the
// registered device ("" when none does).
func differs(cur state.Device, in api.Device) string {
	switch {
	case cur.Decommissioned:
		return "status (it was decommissioned)"
	case cur.UDIDI != in.UDIDI:
		return "udi_di"
	case cur.Product != in.Product:
		return "product"
	case cur.Hardware != in.Hardware:
		return "hardware"
	case cur.Site != in.Site:
		return "site"
	case cur.CareArea != in.CareArea:
		return "care_area"
	case !slices.Equal(cur.Tags, in.Tags) && !(len(cur.Tags) == 0 && len(in.Tags) == 0):
		return "tags"
	case cur.PublicKey != in.PublicKey:
		return "public_key"
	}
	return ""
}

// Decommission retires a device and revokes its key: at once on this
// replica, within EpochCheckInterval on the others.
func (r *Registry) Decommission(ctx context.Context, id string) error {
	if err := r.reg.Decommission(ctx, id); err != nil {
		return err
	}
	r.cache.dropDevice(id)
	r.rec.record(ctx, "device.decommission", id, nil)
	return nil
}
