package blobtest

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/vigil-ota/vigil/server/internal/blob"
)

// BenchObjectSizes are the object sizes the throughput benchmarks use: a
// metadata file, a small patch and a large image.
var BenchObjectSizes = []int64{4 << 10, 1 << 20, 64 << 20}

// Bench measures Put and Get throughput (b.SetBytes) for each size.
func Bench(b *testing.B, s blob.Store) {
	ctx := context.Background()
	for _, size := range BenchObjectSizes {
		key := fmt.Sprintf("bench/%d", size)
		b.Run(fmt.Sprintf("Put/%s", human(size)), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if err := s.Put(ctx, key, newPattern(size), size); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("Get/%s", human(size)), func(b *testing.B) {
			if err := s.Put(ctx, key, newPattern(size), size); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			for b.Loop() {
				rc, _, err := s.Get(ctx, key, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}

func human(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
