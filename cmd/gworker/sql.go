//go:build !gworker_nosql

package main

import (
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/sqlbackend"
)

// extraBackends are the result backends command gworker registers beside
// the App's defaults: the SQL tables of Celery and of
// django-celery-results. Built with -tags gworker_nosql it has none.
var extraBackends = []func(*result.Registry){sqlbackend.Register}

// withSQL says whether this build has the SQL backends.
const withSQL = true
