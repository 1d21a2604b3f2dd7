package logs

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// benchLines is a batch of n short lines of app, like a web server's.
func benchLines(app string, n int) []Line {
	now := time.Now()
	lines := make([]Line, n)
	for i := range lines {
		lines[i] = Line{
			Time:   now.Add(time.Duration(i) * time.Microsecond),
			App:    app,
			Source: "one-off-4821",
			Stream: Stdout,
			Text:   fmt.Sprintf("GET /healthz 200 %dms", i%100),
		}
	}
	return lines
}

// recordBytes is the size of lines as records.
func recordBytes(lines []Line) int64 {
	var b []byte
	for i := range lines {
		b = appendRecord(b, &lines[i])
	}
	return int64(len(b))
}

// BenchmarkStore_Append measures the ingestion rate, in lines per second,
// with the default retention (64 MiB per app, so segments roll and old ones
// are deleted as it runs).
func BenchmarkStore_Append(b *testing.B) {
	ctx := context.Background()
	for _, batch := range []int{1000, 100, 1} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s, err := Open(Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			lines := benchLines("app", batch)
			b.SetBytes(recordBytes(lines))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if err := s.Append(ctx, lines); err != nil {
					b.Fatal(err)
				}
				n += batch
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "lines/s")
		})
	}

	// Appends to different apps run in parallel.
	b.Run("batch=1000/apps=parallel", func(b *testing.B) {
		s, err := Open(Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		const batch = 1000
		b.SetBytes(recordBytes(benchLines("app", batch)))
		var apps, n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			lines := benchLines(fmt.Sprintf("app-%d", apps.Add(1)), batch)
			for pb.Next() {
				if err := s.Append(ctx, lines); err != nil {
					b.Error(err)
					return
				}
				n.Add(batch)
			}
		})
		b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "lines/s")
	})
}

// BenchmarkStore_Tail measures reading the last 100 lines of a full log.
func BenchmarkStore_Tail(b *testing.B) {
	ctx := context.Background()
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	lines := benchLines("app", 1000)
	for range DefaultMaxBytesPerApp / recordBytes(lines) {
		if err := s.Append(ctx, lines); err != nil {
			b.Fatal(err)
		}
	}
	for _, q := range []Query{{}, {Source: "one-off-4821"}} {
		b.Run(fmt.Sprintf("source=%q", q.Source), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				got, err := s.Tail(ctx, "app", q)
				if err != nil || len(got) != DefaultTailLines {
					b.Fatalf("Tail: %d lines, %v", len(got), err)
				}
			}
		})
	}
}
