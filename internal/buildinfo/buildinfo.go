// Package buildinfo holds the version stamped into every Vigil binary at
// link time (see the Makefile's LDFLAGS). It has no behaviour of its own.
package buildinfo

// Version is set with -ldflags "-X github.com/vigil-ota/vigil/internal/buildinfo.Version=...".
// Binaries built without the Makefile report "dev".
var Version = "dev"
