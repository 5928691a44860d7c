package protocol

// UnmarshalJSONOrdered is UnmarshalJSON with objects decoded as Dict, so
// that the key order of the input is kept, as in the Python dict a Celery
// worker would decode (a duplicate key keeps its first position and its
// last value). Commands whose replies print an argument back use it.
func UnmarshalJSONOrdered(data []byte) (any, error) { return unmarshalJSONOrdered(data) }
