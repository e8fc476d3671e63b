package tufrepo_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
)

// FuzzSubmissionVerification: arbitrary bytes as root, targets or product
// metadata never panic the verifier, and nothing that is not signed by the
// right keys is ever published (the timestamp does not move).
func FuzzSubmissionVerification(f *testing.F) {
	fx := newFixture(f, nil, nil)
	md := fx.nextRole(f)
	good := sign(f, md, signer(f, "product-demo-pump"))
	f.Add([]byte(nil), []byte(nil), good)
	f.Add([]byte(`{"signed":{"_type":"root","version":2},"signatures":[]}`), []byte(nil), []byte(nil))
	f.Add([]byte(nil), []byte(`{"signed":{"_type":"targets","version":9223372036854775807,"expires":"9999-12-31T23:59:59Z"},"signatures":[{"keyid":"x","sig":"00"}]}`), []byte(nil))
	f.Add([]byte(nil), []byte(nil), []byte(`{"signed":{"_type":"targets","spec_version":"1.0.31","version":2,"expires":"2099-01-01T00:00:00Z","targets":{"demo-pump/x":{"length":-1,"hashes":{}}}},"signatures":[]}`))
	f.Fuzz(func(t *testing.T, root, targets, product []byte) {
		before := readTimestamp(t, fx.blobs).Signed.Version
		req := api.SubmitRequest{Root: root, Targets: targets}
		if product != nil {
			req.Products = map[string]json.RawMessage{"demo-pump": product}
		}
		_, err := fx.repo.Submit(context.Background(), req)
		after := readTimestamp(t, fx.blobs).Signed.Version
		if err != nil {
			if after != before {
				t.Fatalf("a refused submission moved the timestamp (%v)", err)
			}
			if apperr.KindOf(err) == apperr.Internal {
				t.Fatalf("a bad submission is an internal error: %v", err)
			}
			return
		}
		// Only the properly signed seed can pass, and only once.
		if root != nil || targets != nil || string(product) != string(good) {
			t.Fatalf("published an unsigned or altered submission")
		}
	})
}
