package producer

import "github.com/gworker/gworker/result"

// AsyncResult returns the result handle of task id on the producer's
// backend.
func (p *Producer) AsyncResult(id string) *result.AsyncResult {
	return result.NewAsyncResult(id, p.opts.Backend)
}
