package redisbackend_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
)

// A worker stores a task's result; any client, Go or Python, reads it.
func ExampleBackend_Store() {
	ctx := context.Background()
	b, err := redisbackend.Open("redis://127.0.0.1:6379/0", redisbackend.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()

	id := testenv.UUID()
	defer b.Forget(ctx, id)
	done := time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC)
	meta := &result.Meta{TaskID: id, Status: result.Success, Result: 4, DateDone: &done}
	if err := b.Store(ctx, meta); err != nil {
		fmt.Println(err)
		return
	}
	raw, _ := b.Client().Get(ctx, b.TaskKey(id)).Result()
	before, _, _ := strings.Cut(raw, `, "task_id"`)
	fmt.Println(before)

	v, err := result.NewAsyncResult(id, b).Get(ctx, result.WithTimeout(5*time.Second))
	fmt.Println(v, err)
	// Output:
	// {"status": "SUCCESS", "result": 4, "traceback": null, "children": [], "date_done": "2026-01-02T03:04:05.678901"
	// 4 <nil>
}

// WaitReady reports each task once as it becomes ready.
func ExampleBackend_WaitReady() {
	ctx := context.Background()
	b, err := redisbackend.Open("redis://127.0.0.1:6379/0", redisbackend.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()

	id := testenv.UUID()
	defer b.Forget(ctx, id)
	go func() {
		now := time.Now()
		_ = b.Store(ctx, &result.Meta{TaskID: id, Status: result.Success, Result: "done", DateDone: &now})
	}()
	err = b.WaitReady(ctx, []string{id}, func(m *result.Meta) {
		fmt.Println(m.Status, m.Result)
	})
	fmt.Println(err)
	// Output:
	// SUCCESS done
	// <nil>
}
