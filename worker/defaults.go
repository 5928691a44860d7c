package worker

import "github.com/gworker/gworker/config"

// Defaults of Config that its fields name. Their home is package config,
// which holds every default of a node; the rest (queue, prefetch
// multiplier, held ETA messages, ETA horizon) are config's directly.
const (
	// DefaultMaxRedeliveries is the default of Config.MaxRedeliveries.
	DefaultMaxRedeliveries = config.DefaultMaxRedeliveries
	// DefaultMaxPendingResults is the default Config.MaxPendingResults.
	DefaultMaxPendingResults = config.DefaultMaxPendingResults
	// DefaultMaxHeldETABytes is the default Config.MaxHeldETABytes: 64 MiB
	// of held message bodies raise the prefetch window at most.
	DefaultMaxHeldETABytes = config.DefaultMaxHeldETABytes
)

func defaultConcurrency() int { return config.DefaultConcurrency() }
