package schemes

import (
	"reflect"
	"testing"
)

func TestTable(t *testing.T) {
	plain, drivers := New[int](false), New[int](true)
	for _, tb := range []*Table[int]{plain, drivers} {
		tb.Set(1, "AMQP", "amqps")
		tb.Set(2, "db+mysql")
	}
	for url, want := range map[string]int{"amqp://h": 1, "Amqps://h": 1, "db+mysql://h/x": 2} {
		if v, ok := plain.Lookup(url); !ok || v != want {
			t.Errorf("Lookup(%s) = %d, %v", url, v, ok)
		}
	}
	if _, ok := plain.Lookup("db+mysql+pymysql://h/x"); ok {
		t.Error("a table without drivers served a +driver variant")
	}
	if v, ok := drivers.Lookup("db+mysql+pymysql://h/x"); !ok || v != 2 {
		t.Errorf("+driver variant: %d, %v", v, ok)
	}
	for _, url := range []string{"sqs://q", "nothing", "", "+x://h"} {
		if _, ok := drivers.Lookup(url); ok {
			t.Errorf("Lookup(%q) found something", url)
		}
	}
	if got := plain.Names(); !reflect.DeepEqual(got, []string{"amqp", "amqps", "db+mysql"}) {
		t.Errorf("Names %v", got)
	}
	if got := plain.List(); got != "amqp://, amqps://, db+mysql://" {
		t.Errorf("List %q", got)
	}
	if Of("Sentinel://a:1;sentinel://b:2") != "sentinel" || Of("localhost:5672") != "" {
		t.Error("Of")
	}
}
