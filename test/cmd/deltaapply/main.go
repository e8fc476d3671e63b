// Command deltaapply rebuilds an image from a base and a delta with
// internal/delta, as a device does, so the delta benchmark can measure the
// apply's time and peak RSS in a process of its own; it prints
// "peak_rss_kib N" (the kernel's VmHWM) when done.
//
//	deltaapply BASE DELTA OUT RESULT_SHA256
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vigil-ota/vigil/internal/delta"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: deltaapply BASE DELTA OUT RESULT_SHA256")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3], os.Args[4]); err != nil {
		fmt.Fprintln(os.Stderr, "deltaapply:", err)
		os.Exit(1)
	}
	// The peak RSS of this program alone (a parent's rusage of its child
	// also counts the parent's pages shared before exec).
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Println("peak_rss_kib", strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
}

func run(basePath, deltaPath, outPath, want string) error {
	base, err := os.Open(basePath)
	if err != nil {
		return err
	}
	defer base.Close()
	d, err := os.Open(deltaPath)
	if err != nil {
		return err
	}
	defer d.Close()
	out, err := os.Create(outPath)
	if err != nil {
		return err
	}
	defer out.Close()
	// The base's hash and the result's length come from the delta's own
	// header here; a device takes them from its slot record and the signed
	// full image. Neither hashes the base: the result's hash is checked.
	hd, err := peek(deltaPath)
	if err != nil {
		return err
	}
	_, err = delta.Apply(base, d, out, delta.Expect{BaseSHA256: hd.BaseSHA256, BaseLength: hd.BaseLength, ResultSHA256: want, ResultLength: hd.ResultLength})
	if err != nil {
		return err
	}
	return out.Sync()
}

func peek(path string) (delta.Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return delta.Header{}, err
	}
	defer f.Close()
	return delta.ReadHeader(bufioReader(f))
}

func bufioReader(r io.Reader) *bufio.Reader {
	return bufio.NewReaderSize(r, delta.MaxHeaderBytes+len(delta.Magic))
}
