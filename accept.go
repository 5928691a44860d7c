package gworker

import (
	"fmt"
	"strings"
)

// acceptTypes turns serializer names into the content types the worker
// accepts.
func acceptTypes(names []string) ([]string, error) {
	var out []string
	for _, name := range names {
		switch strings.TrimSpace(strings.ToLower(name)) {
		case "json", "application/json":
			out = append(out, "application/json")
		case "msgpack", "application/x-msgpack":
			out = append(out, "application/x-msgpack")
		case "":
		default:
			return nil, fmt.Errorf("unsupported content type %q: gworker accepts json and msgpack (never pickle or yaml)", name)
		}
	}
	return out, nil
}
