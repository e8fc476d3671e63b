package api

import (
	"time"

	"github.com/vigil-ota/vigil/api/auditchain"
)

// TokenRequest asks for a new operator token.
type TokenRequest struct {
	Name      string        `json:"name"`
	Role      string        `json:"role"`
	Sites     []string      `json:"sites"`
	ExpiresIn time.Duration `json:"expires_in"` // nanoseconds; 0: the default
}

// TokenCreated is a new token; Secret is shown this once.
type TokenCreated struct {
	ID      string    `json:"id"`
	Secret  string    `json:"token"`
	Role    string    `json:"role"`
	Sites   []string  `json:"sites,omitempty"`
	Expires time.Time `json:"expires"`
}

// Token is a token as listed (never its secret).
type Token struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Sites   []string  `json:"sites,omitempty"`
	Expires time.Time `json:"expires"`
	Revoked bool      `json:"revoked"`
	Created time.Time `json:"created"`
}

// Tokens answers GET RouteTokens.
type Tokens struct {
	Tokens []Token `json:"tokens"`
}

// TokenRevoked answers DELETE RouteToken.
type TokenRevoked struct {
	Revoked string `json:"revoked"`
}

// AuditPage is one page of the hash-chained audit log.
type AuditPage struct {
	Entries []auditchain.Entry `json:"entries"`
}
