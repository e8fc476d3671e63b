package release_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/vigil-ota/vigil/internal/release"
)

// FuzzReleaseSchema feeds arbitrary custom fields to the parser every
// program trusts: it must never panic, and what it accepts must validate
// and survive a round trip unchanged.
func FuzzReleaseSchema(f *testing.F) {
	f.Add([]byte(`{"product":"demo-pump","version":"1.1.0","hardware":["rev-b"],"kind":"full","severity":"security","cycle":"regular"}`), "demo-pump")
	f.Add([]byte(`{"product":"demo-pump","version":"1.0.0","hardware":["rev-b"],"kind":"full","severity":"critical","cycle":"out-of-cycle","downgrade_from":["1.1.0"],"unpacked_length":9223372036854775807}`), "demo-pump")
	f.Add([]byte(`{"product":"demo-pump","version":"1.1.0","hardware":["rev-b"],"kind":"delta","delta_base_sha256":"`+string(make([]byte, 64))+`","severity":"routine","cycle":"regular"}`), "demo-pump")
	f.Add([]byte(`{"product":"x","version":"01.1.0","hardware":[],"kind":"","extra":1}`), "x")
	f.Add([]byte(`[]`), "demo-pump")
	f.Fuzz(func(t *testing.T, raw []byte, product string) {
		msg := json.RawMessage(raw)
		c, err := release.Parse(&msg, product)
		if err != nil {
			return
		}
		if err := c.Validate(product); err != nil {
			t.Fatalf("Parse accepted what Validate refuses: %v", err)
		}
		again, _ := json.Marshal(c)
		m2 := json.RawMessage(again)
		c2, err := release.Parse(&m2, product)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, c, c2)
		}
	})
}
