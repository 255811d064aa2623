// Package web is the shop's pages, embedded in the binary and served by
// the gateway: the storefront at / and the ops dashboard at /ops. They are
// plain HTML, CSS and ES modules (no build step, no framework) that call
// the public API and the WebSocket like any other client; a page holds no
// data of its own, so /ops shows nothing to someone who is not an
// administrator (the API answers them 403).
package web

import (
	"embed"
	"io/fs"
	"mime"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// ES modules go out as JavaScript whatever the host's MIME table says.
func init() { _ = mime.AddExtensionType(".js", "text/javascript; charset=utf-8") }

// securityHeaders keep the pages to their own scripts and origin.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// Pages answers a browser (Accept: text/html) with the page of its path
// (/ the storefront, /ops the dashboard), and anyone else with api; a nil
// api serves the page to everyone.
func Pages(api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if api != nil && !strings.Contains(r.Header.Get("Accept"), "text/html") {
			api.ServeHTTP(w, r)
			return
		}
		name := "static/index.html"
		if r.URL.Path == "/ops" {
			name = "static/ops.html"
		}
		b, err := static.ReadFile(name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		securityHeaders(w.Header())
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(b)
	})
}

// Assets serves /assets/: the pages' scripts and styles.
func Assets() http.Handler {
	sub, _ := fs.Sub(static, "static")
	files := http.FileServer(http.FS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no listings
			return
		}
		securityHeaders(w.Header())
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
