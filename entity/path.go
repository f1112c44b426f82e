package entity

import "strings"

// DropField deletes the field at a dotted path from data, as volatile
// fields are dropped: "a.b" reaches into nested objects, "*" matches every
// member of an object or every element of a list, and a key that itself
// contains dots wins over nesting. A path that leads nowhere is a no-op.
func DropField(data map[string]any, path string) {
	dropField(data, path)
}

func dropField(v any, path string) {
	head, rest, nested := strings.Cut(path, ".")
	switch t := v.(type) {
	case map[string]any:
		if _, ok := t[path]; ok {
			delete(t, path)
			return
		}
		switch {
		case head == "*" && !nested:
			clear(t)
		case head == "*":
			for _, c := range t {
				dropField(c, rest)
			}
		case nested:
			dropField(t[head], rest)
		}
	case []any:
		if head == "*" && nested {
			for _, c := range t {
				dropField(c, rest)
			}
		}
	}
}
