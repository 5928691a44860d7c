package protocol

// Item is one key and value of a Dict.
type Item struct {
	Key   string
	Value any
}

// Dict is a Python dict whose key order is kept when it is encoded. Decoders
// return map[string]any; Dict exists so that encoders can write keys in the
// order Celery writes them.
type Dict []Item

// Get returns the value stored under key and whether it is present.
func (d Dict) Get(key string) (any, bool) {
	for _, it := range d {
		if it.Key == key {
			return it.Value, true
		}
	}
	return nil, false
}

// Map returns the dict as a map.
func (d Dict) Map() map[string]any {
	m := make(map[string]any, len(d))
	for _, it := range d {
		m[it.Key] = it.Value
	}
	return m
}
