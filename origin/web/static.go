package web

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
)

// serveStatic serves a file below the document root with Last-Modified, a strong ETag,
// Content-Type and ranges. ".." segments and symlinks leading out of the root get 403;
// missing files and dotfiles get 404; a directory serves its index.html.
func (h *handler) serveStatic(w http.ResponseWriter, r *http.Request, urlPath string) {
	if !allowRead(w, r) {
		return
	}
	rel, code := cleanRel(urlPath)
	if code != 0 {
		httpError(w, code, http.StatusText(code))
		return
	}
	f, fi, err := h.open(rel)
	if err != nil {
		code := statusForOpenError(err)
		httpError(w, code, http.StatusText(code))
		return
	}
	defer f.Close()
	if fi.IsDir() {
		if !strings.HasSuffix(urlPath, "/") {
			http.Redirect(w, r, urlPath+"/", http.StatusMovedPermanently)
			return
		}
		f.Close()
		if f, fi, err = h.open(path.Join(rel, "index.html")); err != nil || fi.IsDir() {
			httpError(w, http.StatusForbidden, "directory has no index.html")
			return
		}
		defer f.Close()
	}
	if !fi.Mode().IsRegular() {
		httpError(w, http.StatusForbidden, "not a regular file")
		return
	}
	w.Header()["Etag"] = []string{fileETag(fi)}
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

// cleanRel turns a URL path into a path relative to the root, or a status to refuse it with:
// 403 for any ".." segment, 404 for dotfiles and NUL bytes.
func cleanRel(urlPath string) (string, int) {
	if !strings.HasPrefix(urlPath, "/") || strings.IndexByte(urlPath, 0) >= 0 || strings.IndexByte(urlPath, '\\') >= 0 {
		return "", http.StatusNotFound
	}
	for seg := range strings.SplitSeq(urlPath[1:], "/") {
		if seg == ".." {
			return "", http.StatusForbidden
		}
		if strings.HasPrefix(seg, ".") && seg != "." {
			return "", http.StatusNotFound
		}
	}
	rel := strings.TrimPrefix(path.Clean(urlPath), "/")
	if rel == "" {
		rel = "."
	}
	return rel, 0
}

// open opens rel inside the root (os.Root refuses symlinks that lead out of it) and stats it.
func (h *handler) open(rel string) (*os.File, fs.FileInfo, error) {
	f, err := h.root.Open(rel)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// statusForOpenError maps a file system error to 404 (missing), 403 (escapes the root or
// permission denied) or 500.
func statusForOpenError(err error) int {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EINVAL),
		errors.Is(err, syscall.ENAMETOOLONG), errors.Is(err, syscall.ELOOP):
		return http.StatusNotFound
	case errors.Is(err, fs.ErrPermission), strings.Contains(err.Error(), "escapes"):
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

// fileETag is a strong validator from the file's modification time and size.
func fileETag(fi fs.FileInfo) string {
	b := make([]byte, 0, 40)
	b = append(b, '"')
	b = strconv.AppendInt(b, fi.ModTime().UnixNano(), 16)
	b = append(b, '-')
	b = strconv.AppendInt(b, fi.Size(), 16)
	return string(append(b, '"'))
}
