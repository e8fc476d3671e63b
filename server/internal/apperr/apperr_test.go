package apperr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/vigil-ota/vigil/server/internal/apperr"
)

func TestKindSurvivesWrapping(t *testing.T) {
	base := apperr.New(apperr.Conflict, "role demo-pump moved on")
	wrapped := fmt.Errorf("publish: %w", base)
	if apperr.KindOf(wrapped) != apperr.Conflict || !errors.Is(wrapped, base) {
		t.Fatalf("kind %v", apperr.KindOf(wrapped))
	}
}

func TestUnclassifiedErrorsAreInternalAndHidden(t *testing.T) {
	err := errors.New(`pq: relation "tuf_role_versions" does not exist`)
	if apperr.KindOf(err) != apperr.Internal {
		t.Fatal("unclassified error is not Internal")
	}
	code, msg := apperr.Public(err)
	if code != "internal" || msg != "internal error" {
		t.Fatalf("public view %q %q", code, msg)
	}
	code, msg = apperr.Public(apperr.Wrap(err, apperr.Internal, "database said %v", err))
	if msg != "internal error" {
		t.Fatalf("internal message leaked: %q %q", code, msg)
	}
}

func TestContextEndingIsUnavailable(t *testing.T) {
	for _, err := range []error{context.DeadlineExceeded, fmt.Errorf("query: %w", context.Canceled)} {
		if apperr.KindOf(err) != apperr.Unavailable {
			t.Errorf("%v: kind %v", err, apperr.KindOf(err))
		}
	}
}

func TestSpecificCodeOverridesKindName(t *testing.T) {
	e := apperr.New(apperr.Conflict, "x").WithCode("version_conflict")
	if code, _ := apperr.Public(e); code != "version_conflict" {
		t.Fatalf("code %q", code)
	}
	if code, _ := apperr.Public(apperr.New(apperr.Forbidden, "x")); code != "permission_denied" {
		t.Fatalf("code %q", code)
	}
}

func TestCauseIsLoggedButNotShown(t *testing.T) {
	cause := errors.New("dial tcp 10.1.2.3:5432: connection refused")
	e := apperr.Wrap(cause, apperr.Unavailable, "database unavailable")
	if !errors.Is(e, cause) || e.Error() != "database unavailable: "+cause.Error() {
		t.Fatalf("Error() = %q", e.Error())
	}
	if _, msg := apperr.Public(e); msg != "database unavailable" {
		t.Fatalf("public message %q", msg)
	}
}
