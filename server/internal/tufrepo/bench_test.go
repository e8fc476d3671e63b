package tufrepo_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
)

// BenchmarkPublishIntoARoleHolding measures one publish (verify the signed
// product role, check the new image, sign snapshot and timestamp, write
// them) when the product role already holds 1, 1,000 or 10,000 releases.
// Goal: under 1 s with 10,000 (docs/benchmarks.md).
func BenchmarkPublishIntoARoleHolding(b *testing.B) {
	for _, n := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("%d-releases", n), func(b *testing.B) {
			f := newFixture(b, nil, nil)
			for i := range n {
				addTarget(b, f, fmt.Sprintf("0.%d.%d", i/1000, i%1000))
			}
			if _, err := f.repo.Submit(context.Background(), api.SubmitRequest{Products: map[string]json.RawMessage{"demo-pump": sign(b, f.role, signer(b, "product-demo-pump"))}}); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				b.StopTimer()
				i++
				addTarget(b, f, fmt.Sprintf("1.0.%d", i))
				body := sign(b, f.role, signer(b, "product-demo-pump"))
				b.StartTimer()
				if _, err := f.repo.Submit(context.Background(), api.SubmitRequest{Products: map[string]json.RawMessage{"demo-pump": body}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// addTarget stores an image straight in the blob store and adds it to the
// next version of the fixture's product role (not yet submitted).
func addTarget(b testing.TB, f *fixture, version string) {
	img := []byte("image " + version)
	sum := sha256.Sum256(img)
	name := "demo-pump-" + version + ".img"
	if err := f.blobs.Put(context.Background(), "targets/demo-pump/"+hexs(sum[:])+"."+name, bytes.NewReader(img), int64(len(img))); err != nil {
		b.Fatal(err)
	}
	c, _ := json.Marshal(release.Custom{Product: "demo-pump", Version: version, Hardware: []string{"rev-b"}, Kind: "full", Severity: "routine", Cycle: "regular"})
	raw := json.RawMessage(c)
	f.role.Signed.Targets["demo-pump/"+name] = &metadata.TargetFiles{Length: int64(len(img)), Hashes: metadata.Hashes{"sha256": sum[:]}, Custom: &raw}
	f.role.Signed.Version++
}
