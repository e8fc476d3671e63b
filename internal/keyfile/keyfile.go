// Package keyfile reads and writes Vigil's signing keys on disk. It is shared
// by all three programs: vigil (release engineers generate and use offline
// keys), vigil-server (online snapshot and timestamp keys) and vigil-agent
// (the device's own key).
//
// Format (documented in keys-example/README.md):
//   - NAME.key: the private key, PEM block "PRIVATE KEY" holding PKCS#8,
//     written with mode 0600 and never overwritten unless asked.
//   - NAME.pub: the public key, PEM block "PUBLIC KEY" holding PKIX, 0644.
//
// Key types: ed25519 (generated here) and ECDSA P-256 (read, for keys made
// by other tools), the two that go-tuf v2 signs and verifies reliably.
//
// Threat model: private key files are secrets. Writes go to a temporary file
// in the same directory, are fsynced and renamed, so a crash never leaves a
// truncated key under the real name; an existing key is never replaced
// without force, because replacing an offline key by accident cannot be
// undone.
package keyfile

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/vigil-ota/vigil/internal/atomicfile"
)

// File permissions.
const (
	PrivatePerm fs.FileMode = 0o600
	PublicPerm  fs.FileMode = 0o644
	DirPerm     fs.FileMode = 0o700
)

// File name suffixes and PEM block types.
const (
	PrivateSuffix = ".key"
	PublicSuffix  = ".pub"
	pemPrivate    = "PRIVATE KEY"
	pemPublic     = "PUBLIC KEY"
)

// MaxNameLength bounds a key name, in bytes.
const MaxNameLength = 64

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// ErrExists is returned when a key file already exists and force is off.
var ErrExists = errors.New("key file already exists")

// ValidateName checks a key name: lower-case letters, digits, '.', '_' and
// '-', starting with a letter or digit, so it is always a plain file name.
func ValidateName(name string) error {
	if len(name) > MaxNameLength || !validName.MatchString(name) {
		return fmt.Errorf("key name %q: use 1 to %d lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", name, MaxNameLength)
	}
	return nil
}

// Paths returns the private and public file paths of key name in dir.
func Paths(dir, name string) (priv, pub string) {
	return filepath.Join(dir, name+PrivateSuffix), filepath.Join(dir, name+PublicSuffix)
}

// GenerateEd25519 makes a new ed25519 key pair.
func GenerateEd25519() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// Write stores key as NAME.key and its public half as NAME.pub in dir,
// creating dir (0700) if needed. Without force an existing file is an
// ErrExists error and nothing is written.
func Write(dir, name string, key crypto.Signer, force bool) (privPath, pubPath string, err error) {
	if err := ValidateName(name); err != nil {
		return "", "", err
	}
	privPath, pubPath = Paths(dir, name)
	if !force {
		for _, p := range []string{privPath, pubPath} {
			if _, err := os.Stat(p); err == nil {
				return "", "", fmt.Errorf("%w: %s (pass --force to replace it)", ErrExists, p)
			}
		}
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("encode private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", "", fmt.Errorf("encode public key: %w", err)
	}
	if err := os.MkdirAll(dir, DirPerm); err != nil {
		return "", "", err
	}
	if err := atomicfile.WriteFile(privPath, pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), PrivatePerm); err != nil {
		return "", "", err
	}
	if err := atomicfile.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: pubDER}), PublicPerm); err != nil {
		return "", "", err
	}
	return privPath, pubPath, nil
}

// ReadPrivate loads a private key file.
func ReadPrivate(path string) (crypto.Signer, error) {
	block, err := readPEM(path, pemPrivate)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PKCS#8 private key: %w", path, err)
	}
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%s: ECDSA curve %s is not supported; use P-256", path, k.Curve.Params().Name)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("%s: key type %T is not supported; use ed25519 or ECDSA P-256", path, k)
	}
}

// CheckPrivatePerms refuses a private key file that group or others may
// read or write, as ssh refuses an unprotected identity: a long-lived
// secret readable by every local account is a leaked secret.
func CheckPrivatePerms(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s: permissions %04o are too open; a private key must be accessible by its owner only (chmod 600 %s)", path, perm, path)
	}
	return nil
}

// IsDemoKey reports whether path is one of the public demo keys of
// keys-example/ (whose secrecy is moot: they are in the repository).
func IsDemoKey(path string) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	return filepath.Base(filepath.Dir(abs)) == "keys-example"
}

// ReadPublic loads a public key file.
func ReadPublic(path string) (crypto.PublicKey, error) {
	block, err := readPEM(path, pemPublic)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PKIX public key: %w", path, err)
	}
	switch k := k.(type) {
	case ed25519.PublicKey:
		return k, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%s: ECDSA curve %s is not supported; use P-256", path, k.Curve.Params().Name)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("%s: key type %T is not supported; use ed25519 or ECDSA P-256", path, k)
	}
}

func readPEM(path, want string) (*pem.Block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block found", path)
	}
	if block.Type != want {
		return nil, fmt.Errorf("%s: PEM block is %q, want %q", path, block.Type, want)
	}
	if extra, _ := pem.Decode(rest); extra != nil {
		return nil, fmt.Errorf("%s: more than one PEM block", path)
	}
	return block, nil
}

// Signer loads a private key file as a signer for TUF metadata: ed25519
// signs the message itself, ECDSA P-256 signs its SHA-256.
func Signer(path string) (signature.Signer, error) {
	priv, err := ReadPrivate(path)
	if err != nil {
		return nil, err
	}
	h := crypto.Hash(0)
	if _, ok := priv.(*ecdsa.PrivateKey); ok {
		h = crypto.SHA256
	}
	s, err := signature.LoadSigner(priv, h)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// KeyID is the TUF key id of a public key: the hex SHA-256 of its canonical
// JSON form, as go-tuf computes it.
func KeyID(pub crypto.PublicKey) (string, error) {
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return "", err
	}
	return k.ID()
}
