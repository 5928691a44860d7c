package demo

import (
	"context"
	"errors"
	"time"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// Client gives the client tasks the worker's producer and result backend
// when they run; gworker's App is one.
type Client interface {
	Producer(ctx context.Context) (*producer.Producer, error)
	Backend(ctx context.Context) (result.Backend, error)
}

// Static is a Client of a producer and backend known at registration.
func Static(p *producer.Producer, b result.Backend) Client { return static{p, b} }

type static struct {
	p *producer.Producer
	b result.Backend
}

func (s static) Producer(context.Context) (*producer.Producer, error) { return s.p, nil }
func (s static) Backend(context.Context) (result.Backend, error)      { return s.b, nil }

// RegisterClientTasks adds the demo tasks that send tasks or read results
// from inside a task: tasks.sync_get and tasks.spawn_group.
func RegisterClientTasks(r *worker.Registry, cl Client) error {
	c := &client{cl}
	if err := r.Register("tasks.sync_get", c.SyncGet,
		worker.Params("task_id", "disable_sync_subtasks"), worker.Default("disable_sync_subtasks", true)); err != nil {
		return err
	}
	return r.Register("tasks.spawn_group", c.SpawnGroup, worker.Params("n"))
}

type client struct{ c Client }

// SyncGet waits for the result of another task from inside a task, with
// the deadlock guard as the caller asks: by default it fails with Celery's
// "Never call result.get() within a task!" (RuntimeError in Python).
func (c *client) SyncGet(ctx context.Context, taskID string, disableSyncSubtasks bool) (any, error) {
	b, err := c.c.Backend(ctx)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, result.ErrNoBackend
	}
	return result.NewAsyncResult(taskID, b).Get(ctx,
		result.WithDisableSyncSubtasks(disableSyncSubtasks), result.WithTimeout(30*time.Second))
}

// SpawnGroup applies group(tasks.add(i, i) for i < n) from inside the
// task, saves the GroupResult and returns its id.
func (c *client) SpawnGroup(ctx context.Context, n int) (string, error) {
	if n < 0 || n > 10000 {
		return "", worker.PyError("ValueError", "n must be between 0 and 10000")
	}
	p, err := c.c.Producer(ctx)
	if err != nil {
		return "", err
	}
	if p == nil {
		return "", errors.New("spawn_group needs a producer")
	}
	sigs := make([]*canvas.Signature, n)
	for i := range sigs {
		sigs[i] = canvas.Sig("tasks.add", int64(i), int64(i))
	}
	group := canvas.Group(sigs...)
	req, inTask := worker.RequestFromContext(ctx)
	if inTask {
		root := req.RootID
		if root == "" {
			root = req.ID
		}
		group.Options["parent_id"] = req.ID
		group.Options["root_id"] = root
	}
	g, err := group.ApplyAsync(ctx, p)
	if err != nil {
		return "", err
	}
	if err := g.Save(ctx); err != nil {
		return "", err
	}
	if inTask {
		req.AddChild(g.AsTuple())
	}
	return g.ID(), nil
}
