// Package input holds the server's rules for text that operators and
// devices send and that is later shown, logged or exported: names,
// comments, reasons, CSV cells. Each rule refuses with an *apperr.Error of
// kind Invalid (or TooLarge) that names the field, so the caller learns what
// to fix.
//
// Threat model: stored text is shown in terminals (escape sequences), in
// the web console (markup; escaped there), in CSV exports opened by
// spreadsheets (formula injection: cells starting with = + - @), and in
// audit records kept for years. Text is therefore bounded, valid UTF-8,
// and free of control characters; single-line fields also refuse newlines.
package input

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vigil-ota/vigil/server/internal/apperr"
)

// Limits, in bytes.
const (
	// MaxName bounds names (tokens, care areas, tags).
	MaxName = 128
	// MaxComment bounds comments, reasons and rationales.
	MaxComment = 2048
)

// Line checks a single-line field: at most max bytes of valid UTF-8 with
// no control characters.
func Line(field, v string, max int) error {
	return check(field, v, max, false)
}

// Text checks a free-text field: like Line, but newlines and tabs are
// allowed.
func Text(field, v string, max int) error {
	return check(field, v, max, true)
}

// Required is Line for a field that must not be empty or blank.
func Required(field, v string, max int) error {
	if strings.TrimSpace(v) == "" {
		return apperr.New(apperr.Invalid, "%s is required", field)
	}
	return Line(field, v, max)
}

func check(field, v string, max int, multiline bool) error {
	if len(v) > max {
		return apperr.New(apperr.TooLarge, "%s is %d bytes; the limit is %d", field, len(v), max)
	}
	if !utf8.ValidString(v) {
		return apperr.New(apperr.Invalid, "%s is not valid UTF-8", field)
	}
	for _, r := range v {
		if multiline && (r == '\n' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return apperr.New(apperr.Invalid, "%s holds a control character (U+%04X)", field, r)
		}
	}
	return nil
}

// CSVCell checks one imported CSV cell of free text: a Line that also must
// not start with a character spreadsheets read as a formula (= + - @).
// Structured cells (keys, versions, UDIs) are checked by their own rules
// instead: a base64 key or a HIBCC UDI may well start with '+'. Anything
// Vigil exports as CSV goes through CSVExportCell, whatever was imported.
func CSVCell(field, v string) error {
	if err := Line(field, v, MaxComment); err != nil {
		return err
	}
	if v != "" && strings.ContainsRune(formulaStart, rune(v[0])) {
		return apperr.New(apperr.Invalid, "%s %q starts with %q, which spreadsheets read as a formula", field, v, v[:1])
	}
	return nil
}

// formulaStart are the characters that make a spreadsheet cell a formula
// (with tab and carriage return, which Line already refuses).
const formulaStart = "=+-@"

// CSVExportCell makes a value safe to write into an exported CSV cell: a
// value a spreadsheet would read as a formula gets a leading single quote
// (OWASP's CSV-injection advice).
func CSVExportCell(v string) string {
	if v != "" && strings.ContainsRune(formulaStart+"\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// MaxIdentifier bounds identifiers (sites, devices), in bytes.
const MaxIdentifier = 128

// Identifier checks a site or device identifier: letters, digits and
// . _ : - , starting with a letter or digit — never empty, "*", or
// anything path-like.
func Identifier(field, v string) error {
	if len(v) == 0 || len(v) > MaxIdentifier || !isAlnum(v[0]) {
		return apperr.New(apperr.Invalid, "%s %q is not an identifier (letters, digits, '.', '_', ':', '-', starting with a letter or digit, at most %d bytes)", field, v, MaxIdentifier)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !isAlnum(c) && c != '.' && c != '_' && c != ':' && c != '-' {
			return apperr.New(apperr.Invalid, "%s %q is not an identifier (letters, digits, '.', '_', ':', '-', starting with a letter or digit, at most %d bytes)", field, v, MaxIdentifier)
		}
	}
	if strings.Contains(v, "..") {
		return apperr.New(apperr.Invalid, "%s %q must not contain \"..\"", field, v)
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
