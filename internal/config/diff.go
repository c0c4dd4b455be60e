package config

import (
	"reflect"
	"strings"
)

// ChangedKeys lists the dotted keys whose values differ between two values of one section
// struct (a and b of the same type), under prefix ("proxy"): the leaves of nested sections,
// and lists and arrays of tables as one key each. A reload names them when they change on
// restart only.
func ChangedKeys(prefix string, a, b any) []string {
	var out []string
	diffKeys(prefix, reflect.ValueOf(a), reflect.ValueOf(b), &out)
	return out
}

func diffKeys(prefix string, a, b reflect.Value, out *[]string) {
	if a.Kind() != reflect.Struct || isLeafStruct(a.Type()) {
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, prefix)
		}
		return
	}
	t := a.Type()
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("mapstructure"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		diffKeys(key, a.Field(i), b.Field(i), out)
	}
}
