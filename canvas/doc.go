// Package canvas builds Celery workflows from Go: signatures, groups,
// chains and chords, encoded exactly as Celery 5.2.6 encodes them, so that
// Python and Go workers can run any part of them.
//
// A Signature is a task name with partial args, kwargs and Celery options
// (the option names Celery uses: "queue", "countdown", "link", ...). Group,
// Chain and Chord combine signatures; each has ApplyAsync, which publishes
// the messages a Python client would publish:
//
//   - Group: one message per member, all carrying the group id in the
//     "group" header (group_index null), each with its own frozen id.
//   - Chain: only the first task is sent; embed.chain holds the others,
//     frozen with their ids, in REVERSE order (the next task is the last
//     element). The returned result is the last task's, with its parents.
//   - Chord: the body is frozen first, the chord size is written to the
//     backend (result.ChordBackend) before the last header message, and
//     every header message carries group, group_index 0..n-1 and
//     embed.chord = body. An empty header sends the body at once with
//     args [[]].
//
// # Worker side
//
// ApplyFromMessage applies a signature found in a task message's embed (a
// link callback, an errback, the next chain element, a chord body) the way
// Celery's worker does, and returns the result tuples a worker lists in the
// task's "children". ApplyCallbacks, ApplyErrbacks and ApplyChainNext wrap
// it with Celery's rules for each case.
package canvas
