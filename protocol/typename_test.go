package protocol

import (
	"math/big"
	"testing"
)

func TestTypeName(t *testing.T) {
	for want, v := range map[string]any{
		"NoneType": nil, "bool": true, "int": int64(1), "float": 1.0, "str": "s",
		"bytes": []byte("b"), "list": []any{}, "dict": map[string]any{}, "struct {}": struct{}{},
	} {
		if got := TypeName(v); got != want {
			t.Errorf("%#v: %s, want %s", v, got, want)
		}
	}
	if TypeName(big.NewInt(1)) != "int" || TypeName(Dict{}) != "dict" {
		t.Error("big.Int or Dict misnamed")
	}
}
