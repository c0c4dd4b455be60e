package wire

import (
	"net/http"
	"strconv"
)

// statusLines holds "HTTP/1.1 NNN Reason\r\n" for every code 100–599, built once.
var statusLines = func() (t [500]string) {
	for code := 100; code < 600; code++ {
		t[code-100] = "HTTP/1.1 " + strconv.Itoa(code) + " " + Reason(code) + "\r\n"
	}
	return t
}()

// Reason returns the reason phrase for code: net/http's, or "Status N" for codes without one.
func Reason(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "Status " + strconv.Itoa(code)
}

// StatusLine returns the HTTP/1.1 status line for code, with its CRLF. It does not allocate
// for codes 100–599.
func StatusLine(code int) string {
	if code >= 100 && code < 600 {
		return statusLines[code-100]
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " " + Reason(code) + "\r\n"
}

// AppendStatusLine appends the status line for code to b.
func AppendStatusLine(b []byte, code int) []byte { return append(b, StatusLine(code)...) }

// StatusOf reads the code of a serialised status line ("HTTP/1.1 200 OK"), 0 when malformed.
func StatusOf(head []byte) int {
	if len(head) < 12 || !isDigit(head[9]) || !isDigit(head[10]) || !isDigit(head[11]) {
		return 0
	}
	return int(head[9]-'0')*100 + int(head[10]-'0')*10 + int(head[11]-'0')
}
