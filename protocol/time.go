package protocol

import (
	"fmt"
	"time"
)

// FormatTime formats t as Python's isoformat() does for an aware UTC
// datetime, the form Celery puts in the eta and expires headers: 6
// fractional digits (none when the microseconds are 0; smaller units are
// dropped) and "+00:00". Celery reads the fraction digits as a microsecond
// count, so any other number of digits would be misread.
func FormatTime(t time.Time) string {
	b := make([]byte, 0, 32)
	b = appendISOCore(b, t.UTC())
	return string(append(b, "+00:00"...))
}

// FormatDateDone formats t as the date_done field of a stored result:
// Python's datetime.utcnow().isoformat(), naive UTC with no offset, 6
// fractional digits or none.
func FormatDateDone(t time.Time) string {
	return string(AppendDateDone(make([]byte, 0, 26), t))
}

// AppendDateDone appends FormatDateDone(t) to dst.
func AppendDateDone(dst []byte, t time.Time) []byte { return appendISOCore(dst, t.UTC()) }

// ParseTime parses an ISO 8601 time as Celery writes and reads it:
// YYYY-MM-DD, then optionally 'T' (or any one separator) and HH:MM[:SS[.f]],
// then optionally "Z", "+HH:MM", "+HHMM" or "+HH". A time without an offset
// is naive and taken as UTC. The fraction is read as a decimal fraction
// and truncated to microseconds (a 9-digit fraction from Go loses its last
// 3 digits; Celery itself would misread anything but 6 digits). The result
// is in UTC.
func ParseTime(s string) (time.Time, error) {
	bad := func(why string) (time.Time, error) {
		return time.Time{}, fmt.Errorf("invalid ISO 8601 time %q: %s", truncateForError(s), why)
	}
	p := 0
	num := func(n int) (int, bool) {
		if p+n > len(s) {
			return 0, false
		}
		v := 0
		for i := 0; i < n; i++ {
			c := s[p+i]
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		p += n
		return v, true
	}
	lit := func(c byte) bool {
		if p < len(s) && s[p] == c {
			p++
			return true
		}
		return false
	}
	year, ok := num(4)
	if !ok || !lit('-') {
		return bad("expected YYYY-")
	}
	month, ok := num(2)
	if !ok || !lit('-') {
		return bad("expected MM-")
	}
	day, ok := num(2)
	if !ok {
		return bad("expected DD")
	}
	var hour, minute, sec, nsec int
	if p < len(s) && s[p] != 'Z' && s[p] != '+' && s[p] != '-' {
		p++ // separator: 'T' or ' '
		if hour, ok = num(2); !ok || !lit(':') {
			return bad("expected HH:")
		}
		if minute, ok = num(2); !ok {
			return bad("expected MM")
		}
		if lit(':') {
			if sec, ok = num(2); !ok {
				return bad("expected SS")
			}
			if lit('.') || lit(',') {
				start := p
				scale := 100000000
				for p < len(s) && s[p] >= '0' && s[p] <= '9' {
					nsec += int(s[p]-'0') * scale
					scale /= 10
					p++
				}
				if p == start {
					return bad("empty fraction")
				}
				nsec = nsec / 1000 * 1000 // microseconds, as Python
			}
		}
	}
	loc := time.UTC
	if p < len(s) {
		switch s[p] {
		case 'Z', 'z':
			p++
		case '+', '-':
			sign := 1
			if s[p] == '-' {
				sign = -1
			}
			p++
			oh, ok := num(2)
			if !ok {
				return bad("bad offset")
			}
			om := 0
			if lit(':') {
				if om, ok = num(2); !ok {
					return bad("bad offset")
				}
			} else if p < len(s) {
				if om, ok = num(2); !ok {
					return bad("bad offset")
				}
			}
			if oh > 23 || om > 59 {
				return bad("bad offset")
			}
			loc = time.FixedZone("", sign*(oh*3600+om*60))
		default:
			return bad("unexpected text")
		}
	}
	if p != len(s) {
		return bad("unexpected text")
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || sec > 59 {
		return bad("field out of range")
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc).UTC(), nil
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

func truncateForError(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
