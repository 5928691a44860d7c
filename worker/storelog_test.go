package worker_test

import (
	"strings"
	"testing"
	"time"
)

// A task whose result cannot be stored is never logged as succeeded: the
// log says it ran and why its result is missing.
func TestUnstoredResultIsNotLoggedAsSucceeded(t *testing.T) {
	e := newEnv(t)
	e.start()
	defer e.stop()
	e.backend.SetOutage(true)
	r := e.send("tasks.add", []any{1, 2}, nil)
	waitFor(t, "the store failure to be logged", 20*time.Second, func() bool {
		return e.logs.FilterMessageSnippet("its result could not be stored").Len() > 0
	})
	e.backend.SetOutage(false)
	for _, l := range e.logs.All() {
		if strings.Contains(l.Message, r.ID()) && strings.Contains(l.Message, "succeeded") {
			t.Errorf("logged as succeeded although its result was not stored: %s", l.Message)
		}
	}
}
