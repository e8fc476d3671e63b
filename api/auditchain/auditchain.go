// Package auditchain is the wire form of Vigil's audit log and its
// integrity check, shared by vigil-server (which appends) and the vigil CLI
// (which verifies exports). Each entry carries the hash of the one before
// it, so changing, removing or reordering any entry breaks every hash after
// it; Verify names the first broken entry.
package auditchain

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// GenesisHash is the previous hash of the first entry.
var GenesisHash = strings.Repeat("0", 64)

// Entry is one audited action.
type Entry struct {
	Seq      int64           `json:"seq"`
	Time     time.Time       `json:"time"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Subject  string          `json:"subject"`
	Details  json.RawMessage `json:"details,omitempty"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

// ComputeHash is SHA-256 over the entry's fields (time at millisecond
// precision, UTC) and the previous hash, each on its own line with its
// length, so no two different entries encode alike.
func (e *Entry) ComputeHash() string {
	h := sha256.New()
	for _, f := range []string{
		strconv.FormatInt(e.Seq, 10),
		strconv.FormatInt(e.Time.UTC().UnixMilli(), 10),
		e.Actor, e.Action, e.Subject, string(e.Details), e.PrevHash,
	} {
		fmt.Fprintf(h, "%d:%s\n", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// BrokenError names the first entry that does not verify.
type BrokenError struct {
	Seq    int64
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit chain broken at entry %d: %s", e.Seq, e.Reason)
}

// Verify checks entries (in sequence order, starting at seq 1 or after a
// known entry whose hash is prevHash) and returns a *BrokenError for the
// first one that does not verify.
func Verify(entries []Entry, prevHash string, prevSeq int64) error {
	for _, e := range entries {
		switch {
		case e.Seq != prevSeq+1:
			return &BrokenError{e.Seq, fmt.Sprintf("sequence jumps from %d to %d (an entry was removed or reordered)", prevSeq, e.Seq)}
		case e.PrevHash != prevHash:
			return &BrokenError{e.Seq, "its previous-hash does not match the entry before it"}
		case e.ComputeHash() != e.Hash:
			return &BrokenError{e.Seq, "its content does not match its hash (the entry was changed)"}
		}
		prevHash, prevSeq = e.Hash, e.Seq
	}
	return nil
}
