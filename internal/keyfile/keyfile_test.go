package keyfile_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/internal/keyfile"
)

func TestWrittenKeysReadBackAndSignTUFMetadata(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	k, err := keyfile.GenerateEd25519()
	if err != nil {
		t.Fatal(err)
	}
	privPath, pubPath, err := keyfile.Write(dir, "root-1", k, false)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{privPath: keyfile.PrivatePerm, pubPath: keyfile.PublicPerm, dir: keyfile.DirPerm} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, st.Mode().Perm(), err, want)
		}
	}
	priv, err := keyfile.ReadPrivate(privPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := keyfile.ReadPublic(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.(ed25519.PublicKey).Equal(priv.Public()) {
		t.Fatal("public file does not match the private key")
	}

	// The key signs TUF metadata that go-tuf verifies under the key id we print.
	root := metadata.Root()
	tk, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Signed.AddKey(tk, metadata.ROOT); err != nil {
		t.Fatal(err)
	}
	signer, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Sign(signer); err != nil {
		t.Fatal(err)
	}
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		t.Fatalf("go-tuf does not verify our key's signature: %v", err)
	}
	id, err := keyfile.KeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	if root.Signatures[0].KeyID != id {
		t.Fatalf("signature key id %s, KeyID says %s", root.Signatures[0].KeyID, id)
	}
}

func TestExistingKeyIsNeverReplacedWithoutForce(t *testing.T) {
	dir := t.TempDir()
	k1, _ := keyfile.GenerateEd25519()
	k2, _ := keyfile.GenerateEd25519()
	privPath, _, err := keyfile.Write(dir, "targets", k1, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := keyfile.Write(dir, "targets", k2, false); !errors.Is(err, keyfile.ErrExists) {
		t.Fatalf("second write: %v, want ErrExists", err)
	}
	got, _ := keyfile.ReadPrivate(privPath)
	if !got.(ed25519.PrivateKey).Equal(k1) {
		t.Fatal("the existing key was replaced")
	}
	if _, _, err := keyfile.Write(dir, "targets", k2, true); err != nil {
		t.Fatal(err)
	}
	got, _ = keyfile.ReadPrivate(privPath)
	if !got.(ed25519.PrivateKey).Equal(k2) {
		t.Fatal("--force did not replace the key")
	}
}

func TestECDSAP256IsAcceptedAndOtherCurvesAreNamed(t *testing.T) {
	dir := t.TempDir()
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, _, err := keyfile.Write(dir, "kms-like", p256, false); err != nil {
		t.Fatal(err)
	}
	if _, err := keyfile.ReadPrivate(filepath.Join(dir, "kms-like.key")); err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, _, err := keyfile.Write(dir, "p384", p384, false); err != nil {
		t.Fatal(err)
	}
	if _, err := keyfile.ReadPrivate(filepath.Join(dir, "p384.key")); err == nil || !strings.Contains(err.Error(), "P-384") {
		t.Fatalf("P-384 key: %v", err)
	}
}

func TestMalformedFilesAreNamed(t *testing.T) {
	dir := t.TempDir()
	k, _ := keyfile.GenerateEd25519()
	priv, pub, _ := keyfile.Write(dir, "k", k, false)
	garbage := filepath.Join(dir, "garbage.key")
	os.WriteFile(garbage, []byte("not pem"), 0o600)
	if _, err := keyfile.ReadPrivate(garbage); err == nil || !strings.Contains(err.Error(), "no PEM block") {
		t.Errorf("garbage: %v", err)
	}
	if _, err := keyfile.ReadPrivate(pub); err == nil || !strings.Contains(err.Error(), `want "PRIVATE KEY"`) {
		t.Errorf("public file read as private: %v", err)
	}
	if _, err := keyfile.ReadPublic(priv); err == nil || !strings.Contains(err.Error(), `want "PUBLIC KEY"`) {
		t.Errorf("private file read as public: %v", err)
	}
}

func TestKeyNamesCannotEscapeTheDirectory(t *testing.T) {
	for _, n := range []string{"", "../root", "a/b", "Root", ".hidden", strings.Repeat("a", keyfile.MaxNameLength+1)} {
		if err := keyfile.ValidateName(n); err == nil {
			t.Errorf("name %q accepted", n)
		}
	}
	for _, n := range []string{"root-1", "product-demo-pump", "snapshot", "device.0042"} {
		if err := keyfile.ValidateName(n); err != nil {
			t.Errorf("name %q refused: %v", n, err)
		}
	}
}
