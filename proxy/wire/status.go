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

// AppendStatusLineReason appends the status line for code with the given reason phrase (an
// origin's, say), or the standard one when reason is empty or not valid reason text (RFC 9112
// §4: HTAB, SP, visible and obs-text bytes).
func AppendStatusLineReason(b []byte, code int, reason string) []byte {
	if reason == "" || code < 100 || code > 999 || !validReason(reason) {
		return AppendStatusLine(b, code)
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, reason...)
	return append(b, "\r\n"...)
}

// validReason reports reason-phrase bytes.
func validReason(r string) bool {
	for i := range len(r) {
		if c := r[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// ReasonOf returns the reason phrase of a net/http Status string ("200 OK" → "OK") when its
// code is code, "" otherwise.
func ReasonOf(status string, code int) string {
	if len(status) > 4 && status[3] == ' ' && isDigit(status[0]) && isDigit(status[1]) && isDigit(status[2]) &&
		int(status[0]-'0')*100+int(status[1]-'0')*10+int(status[2]-'0') == code {
		return status[4:]
	}
	return ""
}

// StatusText returns net/http's Status string for code: "200 OK".
func StatusText(code int) string {
	line := StatusLine(code)
	return line[len("HTTP/1.1 ") : len(line)-2]
}
