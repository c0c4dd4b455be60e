package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// secretKeyParts mark keys whose values `outpost config print` masks.
var secretKeyParts = []string{"password", "secret", "hash", "token", "private_key", "key_file"}

// TOML renders the effective configuration as TOML, with secrets masked.
func (c *Config) TOML() ([]byte, error) {
	m := toMap(reflect.ValueOf(*c), "")
	b, err := toml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("config: render: %w", err)
	}
	return b, nil
}

// toMap walks a config struct by its mapstructure tags, turning durations and sizes into the
// strings a person would write and masking secrets.
func toMap(rv reflect.Value, prefix string) any {
	switch x := rv.Interface().(type) {
	case time.Duration:
		return x.String()
	case ByteSize:
		return x.String()
	case fmt.Stringer:
		if rv.Kind() != reflect.Struct {
			return x.String()
		}
	}
	switch rv.Kind() {
	case reflect.Struct:
		m := map[string]any{}
		rt := rv.Type()
		for i := range rt.NumField() {
			tag := strings.Split(rt.Field(i).Tag.Get("mapstructure"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			m[tag] = maskIfSecret(tag, toMap(rv.Field(i), prefix+tag+"."))
		}
		return m
	case reflect.Slice, reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = toMap(rv.Index(i), prefix)
		}
		return out
	case reflect.Map:
		m := map[string]any{}
		for _, k := range rv.MapKeys() {
			ks := fmt.Sprint(k.Interface())
			m[ks] = maskIfSecret(ks, toMap(rv.MapIndex(k), prefix+ks+"."))
		}
		return m
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return ""
		}
		return toMap(rv.Elem(), prefix)
	}
	return rv.Interface()
}

func maskIfSecret(key string, v any) any {
	s, ok := v.(string)
	if !ok || s == "" {
		return v
	}
	for _, p := range secretKeyParts {
		if strings.Contains(strings.ToLower(key), p) {
			return "********"
		}
	}
	return v
}
