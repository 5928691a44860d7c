package main

import (
	"testing"

	"github.com/gworker/gworker"
)

// Command gworker has the SQL result backends unless built with
// -tags gworker_nosql; the App's defaults never do.
func TestSQLBackendsFollowTheBuildTag(t *testing.T) {
	r := gworker.DefaultResultBackends()
	if r.Supports("db+postgresql://u@h/app") {
		t.Fatal("the App's default result backends serve db+postgresql://")
	}
	for _, register := range extraBackends {
		register(r)
	}
	for _, u := range []string{"db+postgresql://u@h/app", "db+mysql+pymysql://u@h/app", "django-db+mysql://u@h/app"} {
		if got := r.Supports(u); got != withSQL {
			t.Errorf("Supports(%s) = %v, want %v", u, got, withSQL)
		}
	}
}
