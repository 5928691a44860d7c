package result_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

func savedTuple(t *testing.T, name string) any {
	t.Helper()
	v, err := protocol.UnmarshalJSON(testenv.ReadTestdata(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)["result"]
}

func ids(rs []result.Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID()
	}
	return out
}

func TestFromTupleGroup(t *testing.T) {
	tup := savedTuple(t, "groupresult_saved.raw")
	r, err := result.FromTuple(tup, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, ok := r.(*result.GroupResult)
	if !ok {
		t.Fatalf("got %T", r)
	}
	if g.ID() != "0000020b-0000-4000-8000-000000000001" || g.Len() != 3 {
		t.Fatalf("group %s with %d members", g.ID(), g.Len())
	}
	want := []string{"0000020b-0000-4000-8000-000000000002", "0000020b-0000-4000-8000-000000000003", "0000020b-0000-4000-8000-000000000004"}
	if got := ids(g.Children()); !reflect.DeepEqual(got, want) {
		t.Errorf("children %v", got)
	}
	if !reflect.DeepEqual(g.AsTuple(), tup) {
		t.Errorf("AsTuple %v, saved %v", g.AsTuple(), tup)
	}
}

// Python restored this vector into a group whose first child has parent
// ...0002 and whose second child is a nested group.
func TestFromTupleNested(t *testing.T) {
	tup := savedTuple(t, "groupresult_nested_saved.raw")
	r, err := result.FromTuple(tup, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := r.(*result.GroupResult)
	if got := ids(g.Children()); !reflect.DeepEqual(got, []string{"0000020c-0000-4000-8000-000000000001", "0000020c-0000-4000-8000-000000000005"}) {
		t.Fatalf("children %v", got)
	}
	first := g.Children()[0].(*result.AsyncResult)
	if first.Parent() == nil || first.Parent().ID() != "0000020c-0000-4000-8000-000000000002" {
		t.Errorf("first child's parent %v", first.Parent())
	}
	nested, ok := g.Children()[1].(*result.GroupResult)
	if !ok || nested.Len() != 2 {
		t.Fatalf("second child %T", g.Children()[1])
	}
	if !reflect.DeepEqual(g.AsTuple(), tup) {
		t.Errorf("AsTuple %v\nsaved %v", g.AsTuple(), tup)
	}
}

func TestFromTuplePlainID(t *testing.T) {
	r, err := result.FromTuple([]any{"abc", nil}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := r.(*result.AsyncResult); !ok || a.ID() != "abc" || a.Parent() != nil {
		t.Errorf("got %#v", r)
	}
	want := []any{[]any{"abc", nil}, nil}
	if !reflect.DeepEqual(r.AsTuple(), want) {
		t.Errorf("AsTuple %v", r.AsTuple())
	}
}

func TestFromTupleBadInput(t *testing.T) {
	deep := any([]any{[]any{"x", nil}, nil})
	for i := 0; i < 2000; i++ {
		deep = []any{[]any{"x", deep}, nil}
	}
	for _, v := range []any{
		nil, "abc", int64(1), []any{}, []any{"a"}, []any{"a", nil, nil},
		[]any{int64(1), nil}, []any{[]any{"a"}, nil}, []any{[]any{int64(5), nil}, nil},
		[]any{[]any{"a", "b"}, nil}, []any{[]any{"g", nil}, "x"}, []any{[]any{"g", nil}, []any{int64(1)}},
		[]any{"", nil}, deep,
	} {
		if _, err := result.FromTuple(v, nil); !errors.Is(err, result.ErrBadTuple) {
			t.Errorf("FromTuple(%.60v): err %v", v, err)
		}
	}
}
