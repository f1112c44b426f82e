package oslo

import "strings"

// scrub returns data without what must never be stored, logged or served:
// request contexts (they carry the user's auth_token; legacy
// scheduler.select_destinations payloads include one) and fields that hold
// tokens, passwords, keys or user data. data itself is left as it is (Map
// does not modify the notification): the maps on the way to a secret are
// copied, the rest is shared.
func scrub(data map[string]any) map[string]any {
	out, _ := scrubMap(data)
	return out
}

func scrubMap(m map[string]any) (map[string]any, bool) {
	var out map[string]any
	for k, v := range m {
		if secretKey(k) {
			if out == nil {
				out = copyMap(m)
			}
			delete(out, k)
			continue
		}
		if nv, changed := scrubValue(v); changed {
			if out == nil {
				out = copyMap(m)
			}
			out[k] = nv
		}
	}
	if out == nil {
		return m, false
	}
	return out, true
}

func scrubValue(v any) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		return scrubMap(x)
	case []any:
		var out []any
		for i, e := range x {
			if ne, changed := scrubValue(e); changed {
				if out == nil {
					out = append([]any(nil), x...)
				}
				out[i] = ne
			}
		}
		if out == nil {
			return v, false
		}
		return out, true
	}
	return v, false
}

func copyMap(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// secretKey says whether a payload key names a secret or a request
// context. The names are those OpenStack uses: auth_token, service_token,
// _context_auth_token, admin_password, adminPass, password, secret,
// provider_auth (Cinder attachments), user_data, private_key.
func secretKey(k string) bool {
	l := strings.ToLower(k)
	if l == "context" || l == "_context" || strings.HasPrefix(l, "_context_") {
		return true
	}
	for _, s := range []string{"token", "password", "adminpass", "passwd", "secret", "provider_auth", "user_data", "private_key", "credential"} {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
