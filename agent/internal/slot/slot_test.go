package slot_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/vigil-ota/vigil/agent/internal/journal"
	"github.com/vigil-ota/vigil/agent/internal/slot"
	"github.com/vigil-ota/vigil/agent/internal/slot/slottest"
)

func TestDirConformance(t *testing.T) {
	slottest.Run(t, func(t *testing.T) slottest.Harness {
		d := &slot.Dir{Root: t.TempDir()}
		if err := d.Provision(slottest.Factory); err != nil {
			t.Fatal(err)
		}
		return slottest.Harness{Backend: d, Restart: func() {}}
	})
}

// A fake bootloader environment driven by shell hooks, as fw_setenv would be.
func TestCommandConformance(t *testing.T) {
	slottest.Run(t, func(t *testing.T) slottest.Harness {
		env := t.TempDir()
		os.WriteFile(filepath.Join(env, "booted"), []byte("a\n"), 0o644)
		c := &slot.Command{
			BootedSlot:  "cat " + env + "/booted",
			SetNextBoot: `echo "$VIGIL_SLOT" > ` + env + "/next",
			MarkGoodCmd: `echo "$VIGIL_SLOT" > ` + env + "/good",
			WriteImage:  `cp "$VIGIL_IMAGE" ` + env + `/slot-"$VIGIL_SLOT" && cmp "$VIGIL_IMAGE" ` + env + `/slot-"$VIGIL_SLOT"`,
			StateDir:    filepath.Join(t.TempDir(), "slots"),
		}
		if err := c.Provision(slottest.Factory); err != nil {
			t.Fatal(err)
		}
		return slottest.Harness{Backend: c, Restart: func() {
			exec.Command("sh", "-c", "[ -f "+env+"/next ] && cp "+env+"/next "+env+"/booted").Run()
		}}
	})
}

func tarball(t *testing.T, files map[string]string, links map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	for name, target := range links {
		tw.WriteHeader(&tar.Header{Name: name, Linkname: target, Typeflag: tar.TypeSymlink})
	}
	tw.Close()
	return buf.Bytes()
}

func provisioned(t *testing.T) *slot.Dir {
	d := &slot.Dir{Root: t.TempDir()}
	if err := d.Provision(slottest.Factory); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDirUnpacksTarGzipAndZstdImages(t *testing.T) {
	plain := tarball(t, map[string]string{"bin/app": "#!/bin/sh\necho v2\n", "etc/version": "2.0.0\n"}, map[string]string{"bin/current": "app"})
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(plain)
	gw.Close()
	zw, _ := zstd.NewWriter(&zs)
	zw.Write(plain)
	zw.Close()
	for name, img := range map[string][]byte{"tar": plain, "tar.gz": gz.Bytes(), "tar.zst": zs.Bytes()} {
		d := provisioned(t)
		p := filepath.Join(t.TempDir(), "img")
		os.WriteFile(p, img, 0o644)
		if err := d.Write(t.Context(), slot.B, p, journal.Release{Target: "x", Version: "2.0.0"}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, _ := os.ReadFile(filepath.Join(d.Root, "b", "etc", "version"))
		link, _ := os.Readlink(filepath.Join(d.Root, "b", "bin", "current"))
		if string(got) != "2.0.0\n" || link != "app" {
			t.Errorf("%s: unpacked %q, link %q", name, got, link)
		}
	}
}

func TestDirCopiesASingleFileImage(t *testing.T) {
	d := provisioned(t)
	p := filepath.Join(t.TempDir(), "firmware.bin")
	os.WriteFile(p, []byte("raw firmware"), 0o644)
	if err := d.Write(t.Context(), slot.B, p, journal.Release{Target: "x", Version: "2.0.0"}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(d.Root, "b", slot.SingleFileName))
	if string(got) != "raw firmware" {
		t.Fatalf("got %q", got)
	}
}

func TestDirRefusesImagesThatEscapeTheSlot(t *testing.T) {
	for name, img := range map[string][]byte{
		"dotdot":        tarball(t, map[string]string{"../evil": "x"}, nil),
		"absolute link": tarball(t, nil, map[string]string{"etc/passwd": "/etc/passwd"}),
		"escaping link": tarball(t, nil, map[string]string{"a/b": "../../x"}),
	} {
		d := provisioned(t)
		p := filepath.Join(t.TempDir(), "img")
		os.WriteFile(p, img, 0o644)
		err := d.Write(t.Context(), slot.B, p, journal.Release{Target: "x", Version: "2.0.0"})
		if err == nil || !strings.Contains(err.Error(), "leaves the slot") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDirLeavesNoHalfSlotAfterACrashMidWrite(t *testing.T) {
	d := provisioned(t)
	// A crash mid-unpack leaves b.new behind and no b.release.json.
	os.MkdirAll(filepath.Join(d.Root, "b.new", "half"), 0o755)
	if _, err := d.Installed(t.Context(), slot.B); err == nil {
		t.Fatal("a half-written slot counts as installed")
	}
	p := filepath.Join(t.TempDir(), "img")
	os.WriteFile(p, []byte("whole"), 0o644)
	if err := d.Write(t.Context(), slot.B, p, journal.Release{Target: "x", Version: "2.0.0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.Root, "b", "half")); !os.IsNotExist(err) {
		t.Fatal("leftovers of the crashed write reached the slot")
	}
}
