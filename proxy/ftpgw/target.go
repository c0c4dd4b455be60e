package ftpgw

import (
	"errors"
	"net"
	"net/http"
	"strings"
)

// target is what an ftp:// request asks for.
type target struct {
	hostport   string // host:port to dial (port 21 by default)
	user, pass string // credentials from the URL or Authorization; empty means anonymous
	path       string // the path to send to the server, relative to the login directory
	urlPath    string // the URL's path, for links and redirects
	dir        bool   // the URL names a directory (trailing slash or ;type=d)
	ascii      bool   // ;type=a
}

// parseTarget reads the URL and credentials of an ftp:// request (RFC 1738 §3.2).
func parseTarget(r *http.Request) (*target, error) {
	u := r.URL
	host := u.Hostname()
	if host == "" {
		return nil, errors.New("the ftp:// URL has no host")
	}
	port := u.Port()
	if port == "" {
		port = "21"
	}
	t := &target{hostport: net.JoinHostPort(host, port)}
	if u.User != nil {
		t.user = u.User.Username()
		t.pass, _ = u.User.Password()
	} else if user, pass, ok := r.BasicAuth(); ok {
		t.user, t.pass = user, pass
	}
	if err := t.setPath(u.Path); err != nil {
		return nil, err
	}
	return t, nil
}

// setPath splits the RFC 1738 typecode off the URL path and derives the FTP path: the URL
// path without its leading slash, so it is taken relative to the login directory (a path
// that then still starts with "/", written //x or /%2Fx, is absolute).
func (t *target) setPath(p string) error {
	if strings.ContainsAny(p, "\r\n\x00") {
		return errors.New("the ftp:// URL path contains control characters")
	}
	if i := strings.LastIndex(p, ";type="); i >= 0 && i == len(p)-len(";type=x") {
		switch strings.ToLower(p[i+len(";type="):]) {
		case "d":
			t.dir = true
		case "a":
			t.ascii = true
		case "i":
		default:
			return errors.New("the ftp:// URL has an unknown ;type= code (want a, i or d)")
		}
		p = p[:i]
	}
	if p == "" {
		p = "/"
	}
	t.urlPath = p
	if strings.HasSuffix(p, "/") {
		t.dir = true
	}
	t.path = strings.TrimPrefix(p, "/")
	if t.dir && t.path != "/" {
		t.path = strings.TrimSuffix(t.path, "/")
	}
	return nil
}

// display is the URL without credentials, for logs, titles and redirects.
func (t *target) display() string {
	host, port, _ := net.SplitHostPort(t.hostport)
	hp := t.hostport
	if port == "21" {
		hp = host
		if strings.Contains(host, ":") {
			hp = "[" + host + "]"
		}
	}
	return "ftp://" + hp + t.urlPath
}
