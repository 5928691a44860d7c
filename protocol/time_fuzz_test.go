package protocol

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseTime: ParseTime never panics, and what it accepts is a UTC time
// that FormatTime writes in a form ParseTime reads back to the same
// instant (to the microsecond, the precision Celery keeps).
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"2030-01-02T03:04:05.123456+00:00", "2030-01-02T03:04:05Z", "2030-01-02", "2030-01-02 03:04",
		"2030-01-02T03:04:05.123456789-07:30", "2030-01-02T03:04:05+0530", "2030-01-02T03:04:05+05",
		"9999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00", "2024-02-29T00:00:00", "2023-02-29T00:00:00",
		"not-a-date", "", "2030-13-01", "2030-01-02T24:00:00", "2030-01-02T03:04:05.",
		"2030-01-02T03:04:05." + strings.Repeat("9", 40),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseTime(s)
		if err != nil {
			if len(err.Error()) > 400 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		if tm.Location() != time.UTC {
			t.Fatalf("%q: not UTC: %v", s, tm)
		}
		if tm.Nanosecond()%1000 != 0 {
			t.Fatalf("%q: sub-microsecond part kept: %v", s, tm)
		}
		if tm.Year() < 1 || tm.Year() > 9999 {
			return // outside what FormatTime can write as four digits
		}
		back, err := ParseTime(FormatTime(tm))
		if err != nil || !back.Equal(tm) {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, tm, FormatTime(tm), back, err)
		}
	})
}
