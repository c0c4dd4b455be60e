package wire

import (
	"net/http"
	"slices"
	"strconv"
)

// AppendHeader appends every field of h as "Name: value\r\n" (values sanitised), names in
// sorted order when sorted (a stable serialisation, for stored heads), skipping the names for
// which skip returns true (skip may be nil).
func AppendHeader(b []byte, h http.Header, sorted bool, skip func(name string) bool) []byte {
	if !sorted {
		for name, values := range h {
			if skip == nil || !skip(name) {
				b = appendValues(b, name, values)
			}
		}
		return b
	}
	names := make([]string, 0, len(h))
	for name := range h {
		if skip == nil || !skip(name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		b = appendValues(b, name, h[name])
	}
	return b
}

// appendValues appends one line per value of the field name.
func appendValues(b []byte, name string, values []string) []byte {
	for _, v := range values {
		b = AppendField(b, name, v)
	}
	return b
}

// HeaderSize estimates the bytes AppendHeader writes for h.
func HeaderSize(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// AppendRequestLine appends "method target HTTP/1.1\r\n".
func AppendRequestLine(b []byte, method, target string) []byte {
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, target...)
	return append(b, " HTTP/1.1\r\n"...)
}

// AppendContentLength appends a Content-Length field line.
func AppendContentLength(b []byte, n int64) []byte {
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, "\r\n"...)
}
