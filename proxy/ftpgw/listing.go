package ftpgw

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jlaffaye/ftp"
)

// listing answers a directory URL with an HTML index.
// On success the session goes back to the pool; on error the caller closes it.
func (s *session) listing(r *http.Request, t *target) (*http.Response, error) {
	if t.path != "" {
		if err := s.changeDir(t.path); err != nil {
			return nil, err
		}
	}
	entries, err := s.c.List("")
	if err != nil {
		return nil, err
	}
	s.release(true)
	h := http.Header{}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", cacheControl(s.g.cfg.ListingTTL, t))
	return newResponse(r, http.StatusOK, h, renderListing(t, entries, s.g.cfg.MaxListing)), nil
}

// renderListing writes the HTML index: directories first, then files, each sorted by name,
// at most max entries.
func renderListing(t *target, entries []*ftp.Entry, max int) string {
	entries = slices.DeleteFunc(slices.Clone(entries), func(e *ftp.Entry) bool {
		return e == nil || e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\x00")
	})
	slices.SortFunc(entries, func(a, b *ftp.Entry) int {
		if (a.Type == ftp.EntryTypeFolder) != (b.Type == ftp.EntryTypeFolder) {
			if a.Type == ftp.EntryTypeFolder {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	truncated := len(entries) > max
	if truncated {
		entries = entries[:max]
	}
	title := "Index of " + htmlEscape(t.display())
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + title + "</title></head>\n<body>\n<h1>" +
		title + "</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Last modified</th></tr>\n")
	if t.path != "" && t.path != "/" {
		b.WriteString("<tr><td><a href=\"../\">Parent directory</a></td><td></td><td></td></tr>\n")
	}
	for _, e := range entries {
		writeRow(&b, e)
	}
	b.WriteString("</table>\n")
	if truncated {
		b.WriteString("<p>Listing cut at " + strconv.Itoa(max) + " entries.</p>\n")
	}
	b.WriteString("</body></html>\n")
	return b.String()
}

// writeRow writes one entry's table row.
func writeRow(b *strings.Builder, e *ftp.Entry) {
	href := url.PathEscape(e.Name)
	if strings.Contains(href, ":") {
		href = "./" + href // not a scheme
	}
	name := htmlEscape(e.Name)
	size := strconv.FormatUint(e.Size, 10)
	switch e.Type {
	case ftp.EntryTypeFolder:
		href += "/"
		name += "/"
		size = "-"
	case ftp.EntryTypeLink:
		name += " -&gt; " + htmlEscape(e.Target)
		size = "-"
	}
	when := ""
	if !e.Time.IsZero() {
		when = e.Time.UTC().Format(time.DateTime)
	}
	b.WriteString("<tr><td><a href=\"" + htmlEscape(href) + "\">" + name + "</a></td><td>" + size +
		"</td><td>" + when + "</td></tr>\n")
}

// htmlEscaper escapes text for HTML content and attribute values.
var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;")

// htmlEscape escapes s for HTML.
func htmlEscape(s string) string { return htmlEscaper.Replace(s) }
