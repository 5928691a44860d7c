package protocol_test

import (
	"fmt"
	"reflect"
	"time"

	"github.com/gworker/gworker/protocol"
)

type Area struct {
	Area float64 `json:"area"`
	Unit string  `json:"unit"`
	Note string  `json:"note,omitempty"`
}

func ExampleFromGo() {
	v, err := protocol.FromGo(Area{Area: 6, Unit: "cm2"})
	if err != nil {
		panic(err)
	}
	for _, it := range v.(protocol.Dict) {
		fmt.Printf("%s: %v (%T)\n", it.Key, it.Value, it.Value)
	}
	b, _ := protocol.MarshalJSON([]any{Area{Area: 6, Unit: "cm2"}, []float64{1, 2}})
	fmt.Println(string(b))
	// Output:
	// area: 6 (float64)
	// unit: cm2 (string)
	// [{"area": 6.0, "unit": "cm2"}, [1.0, 2.0]]
}

func ExampleToGo() {
	for _, v := range []any{3.0, int64(3), 2.5} {
		rv, err := protocol.ToGo(v, reflect.TypeFor[int]())
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(rv.Interface())
	}
	rv, _ := protocol.ToGo(map[string]any{"area": int64(6), "unit": "cm2"}, reflect.TypeFor[Area]())
	fmt.Printf("%+v\n", rv.Interface())
	_, err := protocol.ToGo([]any{1.0, 2.5}, reflect.TypeFor[[]int]())
	fmt.Println("error:", err)
	// Output:
	// 3
	// 3
	// error: must be int, not float
	// {Area:6 Unit:cm2 Note:}
	// error: item 1 must be int, not float
}

func ExampleHeaderValue() {
	v, _ := protocol.HeaderValue(map[string]any{
		"when":  time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		"sizes": []uint16{1, 2},
		"area":  Area{Area: 6, Unit: "cm2"},
	})
	fmt.Printf("%v\n", v)
	_, err := protocol.HeaderValue(uint64(1) << 63)
	fmt.Println(err)
	// Output:
	// map[area:map[area:6 unit:cm2] sizes:[1 2] when:2030-01-02T03:04:05+00:00]
	// cannot encode value: integer 9223372036854775808 does not fit int64
}
