// Package schemes maps the schemes of URLs to what serves them: the one
// table behind gworker's transport and result backend registries.
package schemes

import (
	"sort"
	"strings"
)

// Of returns the lower-cased scheme of a URL ("" when it has none). A
// ;-separated failover list has the scheme of its first URL.
func Of(url string) string {
	s := strings.ToLower(url)
	if i := strings.Index(s, "://"); i >= 0 {
		return s[:i]
	}
	return ""
}

// Table maps schemes (case does not matter) to values of T. Fill it, then
// read it from any number of goroutines.
type Table[T any] struct {
	m       map[string]T
	drivers bool
}

// New returns an empty table. With drivers, a scheme also serves its
// variants with "+driver" suffixes, as SQLAlchemy's URLs name drivers
// (db+mysql serves db+mysql+pymysql://), unless a variant is set itself.
func New[T any](drivers bool) *Table[T] {
	return &Table[T]{m: map[string]T{}, drivers: drivers}
}

// Set makes v serve each of the schemes; a later Set of a scheme replaces
// the earlier one.
func (t *Table[T]) Set(v T, schemes ...string) {
	for _, s := range schemes {
		t.m[strings.ToLower(s)] = v
	}
}

// Lookup returns what serves url's scheme.
func (t *Table[T]) Lookup(url string) (T, bool) {
	s := Of(url)
	for {
		if v, ok := t.m[s]; ok {
			return v, true
		}
		i := strings.LastIndex(s, "+")
		if !t.drivers || i <= 0 {
			var zero T
			return zero, false
		}
		s = s[:i]
	}
}

// Names lists the schemes, sorted.
func (t *Table[T]) Names() []string {
	out := make([]string, 0, len(t.m))
	for s := range t.m {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// List is Names as URL prefixes for a message: "amqp://, redis://".
func (t *Table[T]) List() string {
	names := t.Names()
	for i := range names {
		names[i] += "://"
	}
	return strings.Join(names, ", ")
}
