package ftpgw

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/textproto"
	"path"
	"strconv"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/outpost-proxy/outpost/proxy/wire"
)

// serve answers the request on a logged-in session. On success the session belongs to the
// response (its body closes it); on error the caller closes it.
func (s *session) serve(r *http.Request, t *target) (*http.Response, error) {
	if t.dir {
		return s.listing(r, t)
	}
	return s.file(r, t)
}

// cacheControl is the Cache-Control for a TTL: public for anonymous fetches, private when
// credentials were used (a shared cache must not hand one user's files to another).
func cacheControl(ttl time.Duration, t *target) string {
	scope := "public"
	if t.user != "" {
		scope = "private"
	}
	if ttl <= 0 {
		return scope + ", no-cache"
	}
	return scope + ", max-age=" + strconv.FormatInt(int64(ttl/time.Second), 10)
}

// file answers a file URL: SIZE and MDTM for the header, then RETR for the body. A URL that
// names a directory is redirected to its slash form.
func (s *session) file(r *http.Request, t *target) (*http.Response, error) {
	size, err := s.size(t)
	if err != nil {
		if isCode(err, 550) && s.changeDir(t.path) == nil {
			return s.redirect(r, t), nil
		}
		return nil, err
	}
	if max := int64(s.g.cfg.MaxSize); max > 0 && size > max {
		return nil, errTooLarge
	}
	h := http.Header{}
	h.Set("Content-Type", contentType(t))
	h.Set("Cache-Control", cacheControl(s.g.cfg.FileTTL, t))
	var mtime time.Time
	if s.c.IsGetTimeSupported() {
		if mt, err := s.c.GetTime(t.path); err == nil {
			mtime = mt.UTC().Truncate(time.Second)
			h.Set("Last-Modified", mtime.Format(http.TimeFormat))
		}
	}
	if notModified(r, mtime) {
		s.release(true)
		return &http.Response{Status: wire.StatusText(http.StatusNotModified), StatusCode: 304, Proto: "HTTP/1.1", ProtoMajor: 1,
			ProtoMinor: 1, Header: h, Body: http.NoBody, ContentLength: 0, Request: r}, nil
	}
	resp := &http.Response{Status: wire.StatusText(http.StatusOK), StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: size, Request: r}
	if size >= 0 {
		h.Set("Content-Length", strconv.FormatInt(size, 10))
	}
	if r.Method == http.MethodHead {
		s.release(true)
		resp.Body = http.NoBody
		return resp, nil
	}
	data, err := s.c.Retr(t.path)
	if err != nil {
		return nil, err
	}
	resp.Body = &fileBody{data: data, s: s, size: size, max: int64(s.g.cfg.MaxSize)}
	return resp, nil
}

// size returns the file's size from SIZE, or -1 when the server cannot say (SIZE is
// unsupported, or the transfer is in ASCII mode, where sizes are not meaningful). A 550 or 530
// is returned as an error.
func (s *session) size(t *target) (int64, error) {
	if t.ascii {
		s.ascii = true
		return -1, s.c.Type(ftp.TransferTypeASCII)
	}
	n, err := s.c.FileSize(t.path)
	if err != nil {
		if isCode(err, 550) || isCode(err, 530) {
			return 0, err
		}
		return -1, nil
	}
	return n, nil
}

// notModified applies If-Modified-Since (RFC 9110 §13.1.3) when the request has no
// If-None-Match and the file's modification time is known.
func notModified(r *http.Request, mtime time.Time) bool {
	if mtime.IsZero() || r.Header.Get("If-None-Match") != "" {
		return false
	}
	ims, err := http.ParseTime(r.Header.Get("If-Modified-Since"))
	return err == nil && !mtime.After(ims)
}

// contentType guesses the type from the file name; ;type=a files are text.
func contentType(t *target) string {
	if ct := mime.TypeByExtension(path.Ext(t.path)); ct != "" {
		return ct
	}
	if t.ascii {
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// redirect sends a directory URL without its trailing slash to the slash form, so relative
// links in the listing resolve.
func (s *session) redirect(r *http.Request, t *target) *http.Response {
	s.release(true)
	loc := *r.URL
	loc.Path = t.urlPath + "/"
	loc.RawPath = ""
	h := http.Header{}
	h.Set("Location", loc.String())
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", cacheControl(s.g.cfg.ListingTTL, t))
	body := `<!DOCTYPE html><html><body><a href="` + htmlEscape(loc.String()) + `">Moved</a></body></html>` + "\n"
	return newResponse(r, http.StatusMovedPermanently, h, body)
}

// isCode reports whether err is an FTP reply with the given code.
func isCode(err error, code int) bool {
	var te *textproto.Error
	return errors.As(err, &te) && te.Code == code
}

// fileBody streams a RETR. It checks the transfer's outcome at EOF (a short or failed
// transfer is an error, never a clean end) and ends the request's use of the FTP session on
// Close: a session whose transfer completed goes back to the pool, any other is closed.
type fileBody struct {
	data     *ftp.Response
	s        *session
	size     int64 // from SIZE, -1 if unknown
	max      int64 // max_size, 0 = unlimited
	n        int64
	closed   bool
	complete bool // the whole file arrived and the server confirmed the transfer (226)
}

// Read reads the next bytes of the file.
func (b *fileBody) Read(p []byte) (int, error) {
	n, err := b.data.Read(p)
	b.n += int64(n)
	if b.max > 0 && b.n > b.max {
		return n, errTooLarge
	}
	if err == io.EOF {
		if b.size >= 0 && b.n != b.size {
			return n, io.ErrUnexpectedEOF
		}
		if cerr := b.data.Close(); cerr != nil {
			return n, cerr
		}
		b.complete = true
	}
	return n, err
}

// Close ends the transfer and the FTP session.
func (b *fileBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if !b.complete && b.size >= 0 && b.n == b.size {
		// Every byte arrived but the reader stopped at Content-Length without seeing EOF (as
		// HTTP readers do): the transfer is complete if the server confirms it (226).
		b.complete = b.data.Close() == nil
	}
	if b.complete {
		b.s.release(true)
		return nil
	}
	b.data.Close()
	b.s.close()
	return nil
}
