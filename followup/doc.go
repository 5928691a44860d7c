// Package followup sends the messages that follow a task, as a Celery
// worker does after running one. NewFollowups returns the worker's
// Followups (worker.Config.Followups):
//
//   - on success, link callbacks and the next chain element, each with the
//     return value prepended to its arguments (canvas.ApplyCallbacks,
//     canvas.ApplyChainNext);
//   - on failure, the failure stored under every later chain element's id
//     and errbacks: those registered with worker.RegisterErrback called
//     inline with (request, exc, traceback), the others sent with the failed
//     task's id;
//   - chord parts counted in a result.ChordBackend and, when the last one
//     completes, the body sent with the ordered results, or ChordError
//     stored under the body's id when a part failed;
//   - retries (same id, retries+1, the new eta) and far-ETA messages
//     republished unchanged to where they came from.
//
// RegisterBuiltins registers the Celery builtin tasks a worker must run for
// Python clients: celery.chord_unlock (ChordUnlockTask), which completes
// chords on result backends that cannot count chord parts.
//
// The package sits above worker, producer and canvas, so that the worker
// itself imports neither.
package followup
