package devicesig_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/vigil-ota/vigil/api/devicesig"
)

func TestPublicKeysAreReadInEveryFormPeopleHave(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	for name, in := range map[string]string{
		"PEM file":      pemText,
		"PEM with CRLF": strings.ReplaceAll(pemText, "\n", "\r\n"),
		"PKIX base64":   base64.StdEncoding.EncodeToString(der),
		"raw base64":    base64.StdEncoding.EncodeToString(pub),
	} {
		got, err := devicesig.ParsePublicKey(in)
		if err != nil || !got.Equal(pub) {
			t.Errorf("%s: %v", name, err)
		}
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	for name, c := range map[string]struct{ in, want string }{
		"ECDSA key":       {string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER})), "not ed25519"},
		"private key PEM": {"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", `not a "PUBLIC KEY" block`},
		"garbage":         {"not a key!", "neither PEM nor base64"},
		"short raw":       {base64.StdEncoding.EncodeToString([]byte("short")), "not a PKIX public key"},
		"huge":            {strings.Repeat("A", devicesig.MaxPublicKeyText+1), "at most"},
	} {
		if _, err := devicesig.ParsePublicKey(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}
