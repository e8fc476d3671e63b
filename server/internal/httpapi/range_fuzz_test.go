package httpapi

import "testing"

// FuzzRangeHeader: any Range header either is refused or resolves to a
// non-empty span inside the object, whatever its size.
func FuzzRangeHeader(f *testing.F) {
	for _, h := range []string{"bytes=0-", "bytes=2-4", "bytes=-3", "bytes=5-100", "bytes=10-", "bytes=-0", "bytes=9223372036854775807-",
		"bytes=-9223372036854775808", "bytes=1-2,3-4", "items=0-1", "bytes= 0 - 1 ", "bytes=4-2"} {
		f.Add(h, int64(10))
	}
	f.Add("bytes=0-", int64(0))
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
			if size < 0 {
				size = 0
			}
		}
		r, err := parseRange(h)
		if err != nil || r == nil {
			return
		}
		start, end, ok := r.resolve(size)
		if !ok {
			return
		}
		if start < 0 || end < start || end >= size {
			t.Fatalf("%q over %d bytes resolved to [%d, %d]", h, size, start, end)
		}
	})
}
