package worker

import (
	"context"

	"go.uber.org/zap"

	"github.com/gworker/gworker/result"
)

// executor takes a job from its pool slot to its end in three stages:
// begin (the checks before it may start, begin.go), run (the call with
// its time limits, run.go) and settle (results, acknowledgement, retries,
// follow-ups, settle.go).
type executor struct {
	log  *zap.Logger
	base context.Context // cancelled by a cold shutdown

	acksLate     bool // Config.AcksLate, unless the task says otherwise
	trackStarted bool // Config.TrackStarted
	// maxRedeliveries is Config.MaxRedeliveries (poison.go); redeliveries
	// counts them when the result backend can.
	maxRedeliveries int
	redeliveries    result.RedeliveryCounter

	runs       runningIDs   // acks_late tasks running, by id (dupguard.go)
	finished   *finishedIDs // acks_late tasks that finished (finished.go)
	revocation *revocation
	active     *activeTasks
	runner     *runner
	results    *resultWriter
	pending    *pendingResults
	followups  *followupSender
	events     *taskEvents
	counts     *counters
	// chain runs a task through Config.Middleware; nil without any.
	chain RunFunc
	// release lets a job whose task returned settle outside its pool
	// slot (pool.release); nil: jobs keep their slot to the end.
	release func(j *job) bool
}

// execute runs one task and does everything that follows it.
func (e *executor) execute(j *job) {
	late, ok := e.begin(j)
	if !ok {
		return
	}
	if late {
		defer e.endRun(j)
	}
	if e.chain != nil {
		j.late = late
		e.runChain(j)
		return
	}
	out := e.run(j)
	e.releaseSlot(j)
	e.settle(j, late, out)
}

// releaseSlot frees j's pool slot for the next task before j settles.
func (e *executor) releaseSlot(j *job) {
	if e.release != nil {
		e.release(j)
	}
}
