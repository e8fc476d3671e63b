package input_test

import (
	"testing"

	"github.com/vigil-ota/vigil/server/internal/input"
)

func TestCSVExportCellNeutralisesFormulas(t *testing.T) {
	for in, want := range map[string]string{"=1+1": "'=1+1", "+H123": "'+H123", "-2": "'-2", "@SUM(A1)": "'@SUM(A1)", "icu": "icu", "": ""} {
		if got := input.CSVExportCell(in); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}

func TestTextRulesNameTheField(t *testing.T) {
	for _, c := range []struct {
		fn   func() error
		fail bool
	}{
		{func() error { return input.Line("f", "ok", 10) }, false},
		{func() error { return input.Line("f", "two\nlines", 100) }, true},
		{func() error { return input.Text("f", "two\nlines\tand tab", 100) }, false},
		{func() error { return input.Text("f", "bell\a", 100) }, true},
		{func() error { return input.Line("f", "\xff", 10) }, true},
		{func() error { return input.Line("f", "toolong", 3) }, true},
		{func() error { return input.Identifier("site", "st-mary") }, false},
		{func() error { return input.Identifier("site", "../x") }, true},
		{func() error { return input.Identifier("site", "a..b") }, true},
		{func() error { return input.Required("f", "  ", 10) }, true},
	} {
		if err := c.fn(); (err != nil) != c.fail {
			t.Errorf("case %d: %v", 0, err)
		}
	}
}
