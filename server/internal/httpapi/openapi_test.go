package httpapi_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/httpapi"
)

// The OpenAPI document describes every /api/v1 route of the router, and
// describes nothing the router lacks; every schema it refers to exists.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	routes := httpapi.Routes(httpapi.Services{})
	inTable := map[string]bool{}
	for _, rt := range routes {
		if strings.HasPrefix(rt.Path, api.APIPrefix+"/") {
			inTable[rt.Method+" "+rt.Path] = true
		}
	}
	for _, op := range api.Operations() {
		if !inTable[op.Method+" "+op.Path] {
			t.Errorf("api.Operations describes %s %s, which the router does not serve", op.Method, op.Path)
		}
		delete(inTable, op.Method+" "+op.Path)
	}
	for r := range inTable {
		t.Errorf("route %s has no api.Operation", r)
	}
	b, err := httpapi.OpenAPI(routes)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI    string                               `json:"openapi"`
		Paths      map[string]map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("%v %s", err, doc.OpenAPI)
	}
	n := 0
	for path, methods := range doc.Paths {
		for method, op := range methods {
			n++
			if op["summary"] == "" || op["operationId"] == "" || op["responses"] == nil {
				t.Errorf("%s %s: %v", method, path, op)
			}
			if strings.Contains(path, ":") || strings.Contains(path, "*") {
				t.Errorf("path %s keeps a router pattern", path)
			}
		}
	}
	if n != len(api.Operations()) {
		t.Errorf("%d operations in the document, %d declared", n, len(api.Operations()))
	}
	for _, ref := range strings.Split(string(b), `"$ref": "#/components/schemas/`)[1:] {
		name := ref[:strings.Index(ref, `"`)]
		if doc.Components.Schemas[name] == nil {
			t.Errorf("schema %s is referred to but missing", name)
		}
	}
	rollout := doc.Paths["/api/v1/rollouts/{id}"]["get"]
	if rollout["x-vigil-permission"] != "read" {
		t.Errorf("GET /rollouts/{id}: %v", rollout)
	}
	if sec := doc.Paths["/api/v1/cvd/reports"]["post"]["security"]; sec == nil || len(sec.([]any)) != 0 {
		t.Errorf("the public intake is documented with security %v", sec)
	}
}

// Every /api/v1 path a document names is a route (with its parameters
// written as :name, {name} or a concrete value).
func TestDocumentedRoutesExist(t *testing.T) {
	var patterns [][]string
	for _, rt := range httpapi.Routes(httpapi.Services{}) {
		patterns = append(patterns, strings.Split(rt.Path, "/"))
	}
	matches := func(path string) bool {
		segs := strings.Split(strings.TrimRight(path, "/."), "/")
		for _, p := range patterns {
			if len(p) != len(segs) && !(len(p) > 0 && strings.HasPrefix(p[len(p)-1], "*") && len(segs) >= len(p)) {
				continue
			}
			ok := true
			for i := range p {
				if strings.HasPrefix(p[i], "*") {
					break
				}
				if i >= len(segs) || (p[i] != segs[i] && !strings.HasPrefix(p[i], ":")) {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
		return false
	}
	root := filepath.Join("..", "..", "..")
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	docs = append(docs, filepath.Join(root, "README.md"))
	ref := regexp.MustCompile(`/api/v1/[A-Za-z0-9_./:{}@…-]*[A-Za-z0-9_}]`)
	for _, d := range docs {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ref.FindAllString(string(b), -1) {
			if !matches(p) {
				t.Errorf("%s names %s, which is not a route", filepath.Base(d), p)
			}
		}
	}
}
