package protocol_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/gworker/gworker/protocol"
)

func ExampleDecode() {
	raw := &protocol.RawMessage{
		ContentType:     protocol.ContentTypeJSON,
		ContentEncoding: "utf-8",
		Headers: map[string]any{
			"lang": "py", "task": "tasks.add", "id": "5e6f0b1c-0000-4000-8000-000000000001",
			"retries": int64(0), "timelimit": []any{nil, nil}, "eta": nil,
		},
		Body: []byte(`[[2, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`),
	}
	m, err := protocol.Decode(raw, protocol.DecodeOptions{})
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Protocol, m.Task, m.ID, m.Args)

	// A pickle body is refused; the error names the task so a FAILURE can
	// still be stored.
	raw.ContentType = protocol.ContentTypePickle
	_, err = protocol.Decode(raw, protocol.DecodeOptions{})
	var de *protocol.DecodeError
	if errors.As(err, &de) && errors.Is(err, protocol.ErrContentDisallowed) {
		fmt.Println(de.Reason, de.ID)
	}
	// Output:
	// 2 tasks.add 5e6f0b1c-0000-4000-8000-000000000001 [2 2]
	// content-disallowed 5e6f0b1c-0000-4000-8000-000000000001
}

func ExampleEncode() {
	eta := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	raw, err := protocol.Encode(&protocol.Message{
		ID:     "5e6f0b1c-0000-4000-8000-000000000001",
		Task:   "tasks.add",
		Args:   []any{2, 2},
		ETA:    &eta,
		Origin: "gen42@host",
	}, protocol.EncodeOptions{})
	if err != nil {
		panic(err)
	}
	fmt.Println(string(raw.Body))
	fmt.Println(raw.Headers["eta"], raw.Headers["argsrepr"], raw.Headers["root_id"])
	fmt.Println(raw.ContentType, raw.DeliveryMode, raw.CorrelationID)
	// Output:
	// [[2, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]
	// 2030-01-01T12:00:00+00:00 (2, 2) 5e6f0b1c-0000-4000-8000-000000000001
	// application/json 2 5e6f0b1c-0000-4000-8000-000000000001
}

func ExampleArgsRepr() {
	fmt.Println(protocol.ArgsRepr([]any{2, "x", nil}))
	fmt.Println(protocol.ArgsRepr([]any{2}))
	fmt.Println(protocol.KwargsRepr(map[string]any{"y": 3}))
	fmt.Println(protocol.Repr([]any{true, 1.0, []byte("ab")}))
	// Output:
	// (2, 'x', None)
	// (2,)
	// {'y': 3}
	// [True, 1.0, b'ab']
}

func ExampleExceptionFromValue() {
	v, _ := protocol.UnmarshalJSON([]byte(`{"exc_type": "ValueError", "exc_message": ["boom", 42], "exc_module": "builtins"}`))
	exc, err := protocol.ExceptionFromValue(v)
	if err != nil {
		panic(err)
	}
	fmt.Println(exc)
	fmt.Println(errors.Is(exc, &protocol.Exception{Type: "ValueError"}))
	// Output:
	// ValueError('boom', 42)
	// true
}

func ExampleParseTime() {
	t, err := protocol.ParseTime("2026-11-24T02:31:21.013565+00:00")
	if err != nil {
		panic(err)
	}
	fmt.Println(t)
	fmt.Println(protocol.FormatTime(t))
	fmt.Println(protocol.FormatDateDone(t))
	// Output:
	// 2026-11-24 02:31:21.013565 +0000 UTC
	// 2026-11-24T02:31:21.013565+00:00
	// 2026-11-24T02:31:21.013565
}

func ExampleSignatureFromValue() {
	v, _ := protocol.UnmarshalJSON([]byte(`{"task": "tasks.mul", "args": [10], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}`))
	sig, err := protocol.SignatureFromValue(v)
	if err != nil {
		panic(err)
	}
	fmt.Println(sig.Task, sig.Args, sig.Immutable)
	// Output:
	// tasks.mul [10] false
}
