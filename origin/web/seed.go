package web

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
)

// seedSite creates dir with the demo site when dir does not exist yet. An existing directory
// is left alone, whatever it holds.
func seedSite(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	files, err := demoSite()
	if err != nil {
		return err
	}
	tmp := dir + ".seeding"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	for name, body := range files {
		p := filepath.Join(tmp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			return err
		}
	}
	return os.Rename(tmp, dir)
}

// demoSite returns the demo site's files by slash-separated path.
func demoSite() (map[string][]byte, error) {
	logo, err := demoPNG()
	if err != nil {
		return nil, fmt.Errorf("png: %w", err)
	}
	dot, err := demoGIF()
	if err != nil {
		return nil, fmt.Errorf("gif: %w", err)
	}
	return map[string][]byte{
		"index.html":    []byte(indexHTML),
		"about.html":    []byte(aboutHTML),
		"css/site.css":  []byte(siteCSS),
		"js/site.js":    []byte(siteJS),
		"img/logo.png":  logo,
		"img/dot.gif":   dot,
		"img/badge.svg": []byte(badgeSVG),
	}, nil
}

// demoPNG draws a 64x64 gradient.
func demoPNG() ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for y := range 64 {
		for x := range 64 {
			img.Set(x, y, color.RGBA{R: uint8(x * 4), G: uint8(y * 4), B: 160, A: 255})
		}
	}
	var b bytes.Buffer
	err := png.Encode(&b, img)
	return b.Bytes(), err
}

// demoGIF draws a 16x16 disc.
func demoGIF() ([]byte, error) {
	img := image.NewPaletted(image.Rect(0, 0, 16, 16), palette.Plan9)
	for y := range 16 {
		for x := range 16 {
			dx, dy := x-8, y-8
			if dx*dx+dy*dy < 49 {
				img.Set(x, y, color.RGBA{R: 220, G: 60, B: 40, A: 255})
			} else {
				img.Set(x, y, color.White)
			}
		}
	}
	var b bytes.Buffer
	err := gif.Encode(&b, img, nil)
	return b.Bytes(), err
}

const indexHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Outpost demo origin</title>
<link rel="stylesheet" href="/css/site.css">
<script src="/js/site.js" defer></script>
</head>
<body>
<header><img src="/img/logo.png" width="64" height="64" alt="Outpost logo"> <h1>Outpost demo origin</h1></header>
<p>This page and its objects come from the web origin. Fetch it through the proxy and watch the
second load come from the cache.</p>
<p><img src="/img/dot.gif" width="16" height="16" alt=""> <img src="/img/badge.svg" width="120" height="20" alt="badge"></p>
<ul>
<li><a href="/about.html">About</a></li>
<li><a href="/page/10">A page with 10 objects</a></li>
<li><a href="/bytes/64k">64 KiB of deterministic bytes</a></li>
<li><a href="/headers">Your request headers</a></li>
<li><a href="/mutable/demo">A resource that changes on PUT</a></li>
</ul>
<p id="clock"></p>
</body>
</html>
`

const aboutHTML = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>About</title><link rel="stylesheet" href="/css/site.css"></head>
<body><h1>About</h1><p>Static files carry Last-Modified, a strong ETag and the cache policy of
their path. <a href="/">Back</a></p></body>
</html>
`

const siteCSS = `body { font-family: sans-serif; margin: 2em auto; max-width: 40em; color: #222; }
header { display: flex; align-items: center; gap: 1em; }
h1 { font-size: 1.6em; }
a { color: #0645ad; }
`

const siteJS = `document.addEventListener("DOMContentLoaded", function () {
  var el = document.getElementById("clock");
  if (el) { el.textContent = "Rendered at " + new Date().toISOString(); }
});
`

const badgeSVG = `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="20" viewBox="0 0 120 20">
<rect width="120" height="20" rx="3" fill="#555"/>
<rect x="60" width="60" height="20" rx="3" fill="#4c1"/>
<text x="30" y="14" fill="#fff" font-family="sans-serif" font-size="11" text-anchor="middle">outpost</text>
<text x="90" y="14" fill="#fff" font-family="sans-serif" font-size="11" text-anchor="middle">cached</text>
</svg>
`
