package protocol_test

import (
	"fmt"
	"math/big"

	"github.com/gworker/gworker/protocol"
)

func ExampleUnmarshalJSON() {
	v, err := protocol.UnmarshalJSON([]byte(`[2, 2.0, 1180591620717411303424, NaN]`))
	if err != nil {
		panic(err)
	}
	for _, x := range v.([]any) {
		fmt.Printf("%T %v\n", x, x)
	}
	// Output:
	// int64 2
	// float64 2
	// *big.Int 1180591620717411303424
	// float64 NaN
}

func ExampleMarshalJSON() {
	b, err := protocol.MarshalJSON(protocol.Dict{
		{Key: "args", Value: []any{2, 2.0, "é"}},
		{Key: "big", Value: new(big.Int).Lsh(big.NewInt(1), 70)},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))
	// Output:
	// {"args": [2, 2.0, "\u00e9"], "big": 1180591620717411303424}
}
