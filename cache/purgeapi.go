package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// adminPurge is one POST /cache/purge: a JSON object
//
//	{"url": "http://host/path"} | {"prefix": "http://host/dir/"} | {"tags": ["a", "b"]}
//
// with "soft": true to mark stale instead of removing, and, for tags, "host" to name the
// Host the purge fan-out forwards the tag purge with (peers route it by Host). The same
// fields as a form (url=, prefix=, tag= repeated or tags= space-separated, soft=1, host=)
// are accepted too.
type adminPurge struct {
	URL    string   `json:"url"`
	Prefix string   `json:"prefix"`
	Tags   []string `json:"tags"`
	Soft   bool     `json:"soft"`
	Host   string   `json:"host"`
}

// readAdminPurge reads and checks an admin purge request (its body already size-limited).
func readAdminPurge(r *http.Request) (adminPurge, error) {
	var p adminPurge
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return p, fmt.Errorf("bad JSON: %w", err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return p, errors.New("bad JSON: data after the object")
		}
	} else {
		if err := r.ParseForm(); err != nil {
			return p, fmt.Errorf("bad form: %w", err)
		}
		p.URL, p.Prefix, p.Host = r.Form.Get("url"), r.Form.Get("prefix"), r.Form.Get("host")
		p.Tags = append(p.Tags, r.Form["tag"]...)
		for _, v := range r.Form["tags"] {
			p.Tags = append(p.Tags, strings.Fields(v)...)
		}
		p.Soft = softPurgeRequested(r.Form["soft"])
	}
	return p, p.check()
}

// check refuses a purge naming more than one kind of target, bad tags or a bad host.
func (p *adminPurge) check() error {
	kinds := 0
	for _, set := range []bool{p.URL != "", p.Prefix != "", p.Tags != nil} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		return errors.New("give one of url, prefix or tags")
	}
	if p.Tags != nil {
		if len(p.Tags) == 0 {
			return errors.New("tags is empty")
		}
		if why := checkPurgeTags(p.Tags); why != "" {
			return errors.New(why)
		}
	}
	if p.Host != "" && (!httpguts.ValidHostHeader(p.Host) || strings.ContainsAny(p.Host, " /\\@?#")) {
		return errors.New("host is not a host[:port]")
	}
	return nil
}

// handleTagPurge answers an admin purge by tags: removed (or marked) here and forwarded
// through the fan-out.
func (c *Cache) handleTagPurge(w http.ResponseWriter, p adminPurge) {
	t := PurgeTarget{Tags: p.Tags, Soft: p.Soft}
	if p.Host != "" {
		t.URL = &url.URL{Scheme: "http", Host: p.Host, Path: "/"}
	}
	n := 0
	rep := c.purgeEverywhere(t, func() { n = c.apply(purgeSpec{tags: p.Tags, soft: p.Soft}) })
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(purgeAnswer{Purged: n, Tags: p.Tags, Soft: p.Soft, PurgeReport: rep})
}
