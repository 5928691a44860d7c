// Package redact hides the secrets of broker and backend URLs in anything
// gworker prints: log fields, errors, usage text. It is the one place that
// knows where a URL keeps a password, so every package uses it rather than
// its own copy.
//
// A URL's password is its userinfo password (amqp://user:pw@host,
// redis://:pw@host) and the value of a password query parameter
// (redis://host/0?password=pw); both become "**", as Celery prints them.
// Several URLs separated by ';' (a failover list) are redacted one by one;
// the list is split only where the part after a ';' begins with a scheme
// (scheme://), so a password containing ';' stays whole and hidden.
// A URL that does not parse is redacted conservatively: everything between
// the scheme and its last '@' is hidden.
package redact

import (
	"net/url"
	"strconv"
	"strings"
)

// Mask replaces every secret.
const Mask = "**"

// secretParams are the query parameters whose values are secrets
// (compared case-insensitively).
var secretParams = map[string]bool{
	"password":          true,
	"passwd":            true,
	"pass":              true,
	"sentinel_password": true,
	"secret":            true,
	"token":             true,
}

// URL returns raw with every password replaced by Mask:
//
//	amqp://guest:guest@localhost:5672//   -> amqp://guest:**@localhost:5672//
//	redis://:pw@h:6379/0?password=pw      -> redis://:**@h:6379/0?password=**
//
// Everything else is kept as written.
func URL(raw string) string {
	if !strings.Contains(raw, ";") {
		return one(raw)
	}
	parts := splitList(raw)
	for i, p := range parts {
		parts[i] = one(p)
	}
	return strings.Join(parts, ";")
}

// splitList splits a failover list at each ';' followed by a scheme.
func splitList(raw string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(raw); i++ {
		if raw[i] == ';' && startsWithScheme(strings.TrimLeft(raw[i+1:], " ")) {
			parts = append(parts, raw[start:i])
			start = i + 1
		}
	}
	return append(parts, raw[start:])
}

// startsWithScheme reports whether s begins with scheme:// (a letter, then
// letters, digits, '+', '-' or '.').
func startsWithScheme(s string) bool {
	i := strings.Index(s, "://")
	if i <= 0 {
		return false
	}
	for j, c := range s[:i] {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (j == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

func one(raw string) string {
	if !strings.ContainsAny(raw, "@?") {
		return raw // fast path: nothing can hide a secret
	}
	if _, err := url.Parse(strings.TrimSpace(raw)); err != nil {
		return conservative(raw)
	}
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + 3
	}
	// Split off the fragment and the query, then the authority ends at the
	// first '/' and its userinfo at the last '@' (as net/url reads it).
	rest, frag, hasFrag := strings.Cut(raw[start:], "#")
	rest, query, hasQuery := strings.Cut(rest, "?")
	authority, path, hasPath := strings.Cut(rest, "/")
	if strings.Contains(path, "@") && strings.Contains(authority, ":") && !strings.Contains(authority, "@") {
		// amqp://u:pa/ss@h// parses as host u, port pa, but the
		// user surely meant a password with a '/' in it.
		return conservative(raw)
	}
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		if colon := strings.Index(authority[:at], ":"); colon >= 0 {
			authority = authority[:colon+1] + Mask + authority[at:]
		}
	}
	var b strings.Builder
	b.WriteString(raw[:start])
	b.WriteString(authority)
	if hasPath {
		b.WriteString("/" + path)
	}
	if hasQuery {
		b.WriteString("?" + redactQuery(query))
	}
	if hasFrag {
		b.WriteString("#" + frag)
	}
	return b.String()
}

// conservative redacts a URL net/url cannot parse: whatever lies between
// the scheme and the last '@' may be a password, and so may any query.
func conservative(raw string) string {
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + 3
	}
	rest := raw[start:]
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user := rest[:at]
		if colon := strings.Index(user, ":"); colon >= 0 {
			user = user[:colon+1] + Mask
		} else {
			user = Mask
		}
		rest = user + rest[at:]
	}
	if q := strings.Index(rest, "?"); q >= 0 {
		rest = rest[:q+1] + redactQuery(rest[q+1:])
	}
	return raw[:start] + rest
}

// redactQuery masks the values of secret parameters, keeping the rest of
// the query as written. A parameter whose name does not decode is masked.
func redactQuery(q string) string {
	parts := strings.Split(q, "&")
	for i, p := range parts {
		k, _, hasValue := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil || secretParams[strings.ToLower(strings.TrimSpace(name))] {
			if hasValue || err != nil {
				parts[i] = k + "=" + Mask
			}
		}
	}
	return strings.Join(parts, "&")
}

// Secrets returns the secret strings of raw (userinfo passwords and secret
// query values), as written and percent-decoded, longest first; empty
// values are left out.
func Secrets(raw string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if s == "" || seen[s] {
			return
		}
		seen[s] = true
		out = append(out, s)
		if d, err := url.PathUnescape(s); err == nil && d != s && d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
		if d, err := url.QueryUnescape(s); err == nil && d != s && d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	for _, u := range strings.Split(raw, ";") {
		start := 0
		if i := strings.Index(u, "://"); i >= 0 {
			start = i + 3
		}
		rest := u[start:]
		// Conservative bounds: the userinfo ends at the last '@'.
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
				add(pw)
			}
		}
		if q := strings.Index(rest, "?"); q >= 0 {
			query, _, _ := strings.Cut(rest[q+1:], "#")
			for _, p := range strings.Split(query, "&") {
				k, v, _ := strings.Cut(p, "=")
				if name, err := url.QueryUnescape(k); err != nil || secretParams[strings.ToLower(strings.TrimSpace(name))] {
					add(v)
				}
			}
		}
	}
	// Longest first, so a secret that contains another is replaced whole.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && len(out[j]) > len(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// String returns s with every occurrence of raw (also in its Go-quoted
// form, as net/url's errors print it) replaced by URL(raw), and then every
// remaining occurrence of one of raw's Secrets replaced by Mask.
func String(s, raw string) string {
	if raw == "" {
		return s
	}
	red := URL(raw)
	if red != raw {
		s = strings.ReplaceAll(s, raw, red)
		if q := strconv.Quote(raw); len(q) > 2 {
			s = strings.ReplaceAll(s, q[1:len(q)-1], strconv.Quote(red)[1:len(strconv.Quote(red))-1])
		}
	}
	for _, sec := range Secrets(raw) {
		s = strings.ReplaceAll(s, sec, Mask)
		if q := strconv.Quote(sec); q[1:len(q)-1] != sec {
			s = strings.ReplaceAll(s, q[1:len(q)-1], Mask)
		}
	}
	return s
}

// Error returns err with raw's secrets removed from its message (see
// String). It returns nil for a nil err, and err itself when its message
// holds no secret of raw. A redacted error keeps only its message: it does
// not unwrap to err, whose message (and fields, such as a *url.Error's
// URL) still hold the secret; callers wrap their own sentinel around it.
func Error(err error, raw string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	red := String(msg, raw)
	if red == msg {
		return err
	}
	return redactedError(red)
}

type redactedError string

func (e redactedError) Error() string { return string(e) }
