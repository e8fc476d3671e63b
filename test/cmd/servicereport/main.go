// Command servicereport reads a `go test -json` stream (the file gotestsum
// writes with --jsonfile) and reports, loudly, which tests ran against real
// services (PostgreSQL, S3) and which skipped because a service was missing.
// It ends with a plain "N passed, N failed, N skipped" line.
//
// With --require it fails (exit 1) when any real-service test skipped or
// when no test of a service ran at all: in CI a skipped real-service test is
// a failure, not a pass.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/vigil-ota/vigil/test/testsvc"
)

// services whose tests are counted.
var services = []string{"postgres", "s3", "chromium"}

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type key struct{ pkg, test string }

type report struct {
	used    map[string]map[key]bool
	skipped map[string]map[key]string // reason
	results map[key]string            // pass, fail, skip of leaf and parent tests
}

func newReport() *report {
	r := &report{used: map[string]map[key]bool{}, skipped: map[string]map[key]string{}, results: map[key]string{}}
	for _, s := range services {
		r.used[s] = map[key]bool{}
		r.skipped[s] = map[key]string{}
	}
	return r
}

func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			continue // gotestsum may interleave build output
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "pass", "fail", "skip":
			if e.Test != "" {
				r.results[k] = e.Action
			}
		case "output":
			r.scanOutput(k, e.Output)
		}
	}
	return sc.Err()
}

func (r *report) scanOutput(k key, out string) {
	for _, s := range services {
		if i := strings.Index(out, testsvc.MarkerUsed+" "+s); i >= 0 {
			r.used[s][k] = true
		}
		if i := strings.Index(out, testsvc.MarkerSkipped+" "+s+":"); i >= 0 {
			r.skipped[s][k] = strings.TrimSpace(out[i+len(testsvc.MarkerSkipped+" "+s+":"):])
		}
	}
}

// leafCounts counts tests that have no subtests.
func (r *report) leafCounts() (pass, fail, skip int) {
	parents := map[key]bool{}
	for k := range r.results {
		if i := strings.LastIndex(k.test, "/"); i >= 0 {
			parents[key{k.pkg, k.test[:i]}] = true
		}
	}
	for k, res := range r.results {
		if parents[k] {
			continue
		}
		switch res {
		case "pass":
			pass++
		case "fail":
			fail++
		case "skip":
			skip++
		}
	}
	return
}

func main() {
	require := flag.Bool("require", false, "fail when a real-service test skipped or none ran")
	only := flag.String("services", strings.Join(services, ","), "with --require: the services this run must use (a run of one package uses fewer)")
	flag.Parse()
	needed := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		needed[strings.TrimSpace(s)] = true
	}
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: servicereport [--require [--services S1,S2]] TEST-JSON-FILE")
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "servicereport:", err)
		os.Exit(2)
	}
	defer f.Close()
	r := newReport()
	if err := r.read(f); err != nil {
		fmt.Fprintln(os.Stderr, "servicereport:", err)
		os.Exit(2)
	}
	bad := false
	fmt.Println()
	fmt.Println("=== Real-service tests")
	for _, s := range services {
		fmt.Printf("%-9s %d tests ran against a real %s, %d skipped\n", s+":", len(r.used[s]), s, len(r.skipped[s]))
		if *require && (len(r.skipped[s]) > 0 || (needed[s] && len(r.used[s]) == 0)) {
			bad = true
		}
	}
	for _, s := range services {
		if len(r.skipped[s]) == 0 {
			continue
		}
		var names []string
		for k, reason := range r.skipped[s] {
			names = append(names, fmt.Sprintf("  %s %s (%s)", k.pkg, k.test, reason))
		}
		sort.Strings(names)
		fmt.Printf("!!! SKIPPED %d %s tests: THEY DID NOT RUN\n%s\n", len(names), s, strings.Join(names, "\n"))
	}
	if bad {
		fmt.Println("!!! --require: every real-service test must run (start PostgreSQL, run `make tools`)")
	}
	pass, fail, skip := r.leafCounts()
	fmt.Printf("tests: %d passed, %d failed, %d skipped\n", pass, fail, skip)
	if bad {
		os.Exit(1)
	}
}
