package tufrepo

import (
	"context"
	"crypto"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/fake" // fakekms:// for tests
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/internal/keyfile"
)

// OnlineKey is a key the server signs snapshot or timestamp with.
type OnlineKey struct {
	Signer signature.Signer
	Key    *metadata.Key
	ID     string
	// Ref is where the key came from (a file path or a KMS URI), for logs.
	Ref string
}

// LoadOnlineKey loads a key from a PEM file (see internal/keyfile) or from
// a sigstore KMS URI (awskms://, gcpkms://, azurekms://, hashivault://, or
// fakekms:// in tests). KMS keys must be ECDSA P-256.
func LoadOnlineKey(ctx context.Context, ref string) (*OnlineKey, error) {
	var sv signature.Signer
	if i := strings.Index(ref, "://"); i > 0 {
		k, err := kms.Get(ctx, ref, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("KMS key %q: %w", ref, err)
		}
		sv = k
	} else {
		var err error
		if !keyfile.IsDemoKey(ref) { // the demo keys are public anyway; the server warns about them
			if err := keyfile.CheckPrivatePerms(ref); err != nil {
				return nil, err
			}
		}
		if sv, err = keyfile.Signer(ref); err != nil {
			return nil, err
		}
	}
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("%s: public key: %w", ref, err)
	}
	key, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	id, err := key.ID()
	if err != nil {
		return nil, err
	}
	return &OnlineKey{Signer: sv, Key: key, ID: id, Ref: ref}, nil
}
