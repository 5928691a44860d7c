package integration

import "testing"

// TestPythonValues checks the one Python<->Go value rule end to end, from
// Python Celery 5.2.6 clients: a Go struct result keeps its whole float a
// float, an int parameter takes 3.0 and refuses 2.5 with TypeError, with
// JSON and msgpack task messages alike.
func TestPythonValues(t *testing.T) {
	q := uniqueQueue(t, "pyvalues")
	startWorker(t, workerOptions{Queues: []string{q}, Extra: []string{"--accept-content", "json,msgpack"}})
	for _, serializer := range []string{"json", "msgpack"} {
		t.Run(serializer, func(t *testing.T) {
			r := pyClient{Conf: map[string]any{
				"task_default_queue":    q,
				"task_serializer":       serializer,
				"accept_content":        []string{"json", "msgpack"},
				"result_accept_content": []string{"json", "msgpack"},
			}}.run(t, `
emit(area=call('tasks.area', (2, 3)))
emit(area_kw=call('tasks.area', kwargs={'w': 2.0, 'h': 3}))
emit(area_types=describe(lambda: sorted((k, type(v).__name__) for k, v in send('tasks.area', (1.5, 4)).get(timeout=TIMEOUT).items())))
emit(double_float=call('tasks.double', (3.0,)))
emit(double_kw=call('tasks.double', kwargs={'x': -4.0}))
emit(double_int=call('tasks.double', (21,)))
emit(double_half=call('tasks.double', (2.5,)))
emit(double_str=call('tasks.double', ('3',)))
`)
			wantValue(t, "area(2, 3)", r.outcome(t, "area"), "{'area': 6.0, 'unit': 'cm2'}", "dict")
			wantValue(t, "area(w=2.0, h=3)", r.outcome(t, "area_kw"), "{'area': 6.0, 'unit': 'cm2'}", "dict")
			wantValue(t, "types of area(1.5, 4)", r.outcome(t, "area_types"), "[('area', 'float'), ('unit', 'str')]", "list")
			wantValue(t, "double(3.0)", r.outcome(t, "double_float"), "6", "int")
			wantValue(t, "double(x=-4.0)", r.outcome(t, "double_kw"), "-8", "int")
			wantValue(t, "double(21)", r.outcome(t, "double_int"), "42", "int")
			for key, want := range map[string]string{
				"double_half": "double() argument 'x' must be int, not float",
				"double_str":  "double() argument 'x' must be int, not str",
			} {
				o := r.outcome(t, key)
				wantExc(t, key, o, "TypeError")
				if o.Str != want {
					t.Errorf("%s: message %q, want %q", key, o.Str, want)
				}
			}
		})
	}
}
