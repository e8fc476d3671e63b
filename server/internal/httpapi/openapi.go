package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/buildinfo"
)

// OpenAPI builds the OpenAPI 3.1 document of the /api/v1 routes: paths,
// methods and who may call them from the route table, summaries, query
// parameters and body types from api.Operations, and a JSON Schema for
// every body type by reflection over the wire types (json tags). No field
// is marked required: the same types travel both ways, and the server's
// validation names any field a request lacks. Nothing is written by hand,
// so the document cannot drift from the router; TestOpenAPIDescribesEveryRoute
// checks the two tables against each other.
func OpenAPI(routes []Route) ([]byte, error) {
	ops := map[string]api.Operation{}
	for _, op := range api.Operations() {
		ops[op.Method+" "+op.Path] = op
	}
	g := &schemas{defs: map[string]any{}, names: map[string]reflect.Type{}}
	paths := map[string]map[string]any{}
	for _, rt := range Sorted(routes) {
		if !strings.HasPrefix(rt.Path, api.APIPrefix+"/") {
			continue
		}
		op, ok := ops[rt.Method+" "+rt.Path]
		if !ok {
			return nil, fmt.Errorf("route %s %s has no api.Operation", rt.Method, rt.Path)
		}
		path, params := openAPIPath(rt.Path)
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		paths[path][strings.ToLower(rt.Method)] = g.operation(rt, op, params)
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "Vigil API", "version": buildinfo.Version,
			"description": "Signed patches for medical devices: repository, fleet, rollouts, vigilance, incident response. Errors are {code, message, request_id}."},
		"paths": paths,
		"components": map[string]any{
			"schemas": g.defs,
			"securitySchemes": map[string]any{
				"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "an operator token (vigil token create); x-vigil-permission names what the route needs"},
				"device": map[string]any{"type": "apiKey", "in": "header", "name": api.HeaderSignature,
					"description": "a request signed with the device's registered ed25519 key (" + api.HeaderDevice + ", " + api.HeaderTimestamp + ", " + api.HeaderNonce + ", " + api.HeaderSignature + "; api/devicesig), or carrying a session ticket (" + api.HeaderSession + ") and the session's MAC in " + api.HeaderSignature + " (a session is opened at " + api.RouteDeviceSession + ")"},
			},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}

// openAPIPath turns ":name" and "*name" segments into "{name}".
func openAPIPath(p string) (string, []string) {
	segs := strings.Split(p, "/")
	var params []string
	for i, s := range segs {
		if strings.HasPrefix(s, ":") || strings.HasPrefix(s, "*") {
			params = append(params, s[1:])
			segs[i] = "{" + s[1:] + "}"
		}
	}
	return strings.Join(segs, "/"), params
}

func (g *schemas) operation(rt Route, op api.Operation, pathParams []string) map[string]any {
	out := map[string]any{"summary": op.Summary, "operationId": operationID(rt), "x-vigil-access": rt.Access.String()}
	var params []any
	for _, p := range pathParams {
		params = append(params, map[string]any{"name": p, "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
	}
	for _, q := range op.Query {
		params = append(params, map[string]any{"name": q, "in": "query", "schema": map[string]any{"type": "string"}})
	}
	if params != nil {
		out["parameters"] = params
	}
	switch {
	case op.Request != nil:
		out["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": g.of(reflect.TypeOf(op.Request))}}}
	case op.RequestMedia != "":
		out["requestBody"] = map[string]any{"required": true, "content": map[string]any{op.RequestMedia: map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}}}
	}
	ok := map[string]any{"description": "success"}
	switch {
	case op.Response != nil:
		ok["content"] = map[string]any{"application/json": map[string]any{"schema": g.of(reflect.TypeOf(op.Response))}}
	case op.ResponseMedia != "":
		ok["content"] = map[string]any{op.ResponseMedia: map[string]any{"schema": map[string]any{}}}
	}
	out["responses"] = map[string]any{"2XX": ok, "default": map[string]any{"description": "an error",
		"content": map[string]any{"application/json": map[string]any{"schema": g.of(reflect.TypeOf(api.Error{}))}}}}
	switch rt.Access {
	case Public:
		out["security"] = []any{}
	case Device:
		out["security"] = []any{map[string]any{"device": []any{}}}
	default:
		out["security"] = []any{map[string]any{"bearer": []any{}}}
		out["x-vigil-permission"] = string(rt.Perm)
	}
	return out
}

func operationID(rt Route) string {
	id := strings.ToLower(rt.Method)
	for _, s := range strings.Split(strings.TrimPrefix(rt.Path, api.APIPrefix+"/"), "/") {
		s = strings.TrimLeft(s, ":*")
		for _, w := range strings.FieldsFunc(s, func(r rune) bool { return r == '-' || r == '_' || r == '.' }) {
			id += strings.ToUpper(w[:1]) + w[1:]
		}
	}
	return id
}

// schemas makes JSON Schemas of Go wire types, named types once each.
type schemas struct {
	defs  map[string]any
	names map[string]reflect.Type
}

var (
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage{})
)

func (g *schemas) of(t reflect.Type) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType:
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.of(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": g.of(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.of(t.Elem())}
	case reflect.Struct:
		return g.ref(t)
	}
	return map[string]any{}
}

// ref names a struct type in components/schemas and refers to it.
func (g *schemas) ref(t reflect.Type) map[string]any {
	name := t.Name()
	if other, ok := g.names[name]; ok && other != t {
		name = strings.ReplaceAll(t.PkgPath(), "/", ".") + "." + name // two types, one name
	}
	ref := map[string]any{"$ref": "#/components/schemas/" + name}
	if _, done := g.names[name]; done {
		return ref
	}
	g.names[name] = t
	props := map[string]any{}
	g.fields(t, props)
	g.defs[name] = map[string]any{"type": "object", "properties": props}
	return ref
}

func (g *schemas) fields(t reflect.Type, props map[string]any) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			g.fields(f.Type, props) // embedded: its fields are this object's
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.of(f.Type)
	}
}

// serveOpenAPI serves the document of the route table it is part of,
// built on first use.
func serveOpenAPI(table *[]Route) gin.HandlerFunc {
	var once sync.Once
	var doc []byte
	var err error
	return func(c *gin.Context) {
		once.Do(func() { doc, err = OpenAPI(*table) })
		if err != nil {
			WriteError(c, err)
			return
		}
		c.Data(http.StatusOK, "application/json", doc)
	}
}
