package protocol

import (
	"fmt"
	"math/big"
)

// TypeName names the Python type of a decoded value ("int", "float",
// "str", "list", "dict", "NoneType", ...), for messages such as Python's
// TypeError texts. Other Go types are named by their Go type.
func TypeName(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int64, int, int32, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case []any:
		return "list"
	case map[string]any, Dict:
		return "dict"
	}
	return fmt.Sprintf("%T", v)
}
