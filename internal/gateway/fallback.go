package gateway

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// lastGood serves the last good answer of a read when its service cannot
// answer (502, 503, 504): the product catalogue stays browsable while
// inventory-service is down. The copy is marked with X-Junction-Fallback and
// its Age. Answers over 1 MiB are not kept.
type lastGood struct {
	mu      sync.RWMutex
	body    []byte
	ctype   string
	at      time.Time
	counter *atomic.Int64
	now     func() time.Time // the clock; time.Now when nil
}

func (lg *lastGood) clock() time.Time {
	if lg.now != nil {
		return lg.now()
	}
	return time.Now()
}

const maxFallbackBody = 1 << 20

// renewCopy is how old the copy may get while answers are good.
const renewCopy = time.Second

func (lg *lastGood) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "" {
			next.ServeHTTP(w, r) // one copy, of the plain listing
			return
		}
		// The copy is renewed at most once a second: keeping every answer
		// cost a buffer per request for a copy that is only read when the
		// service is down.
		lg.mu.RLock()
		renew := lg.body == nil || lg.clock().Sub(lg.at) >= renewCopy
		lg.mu.RUnlock()
		fw := &fallbackWriter{ResponseWriter: w, lg: lg, tooBig: !renew}
		next.ServeHTTP(fw, r)
		if renew && fw.status == http.StatusOK && !fw.tooBig && !fw.fellBack {
			lg.mu.Lock()
			lg.body, lg.ctype, lg.at = fw.buf.Bytes(), fw.Header().Get("Content-Type"), lg.clock()
			lg.mu.Unlock()
		}
	})
}

type fallbackWriter struct {
	http.ResponseWriter
	lg       *lastGood
	status   int
	buf      bytes.Buffer
	tooBig   bool
	fellBack bool
}

func (f *fallbackWriter) WriteHeader(code int) {
	if f.status != 0 {
		return
	}
	f.status = code
	if code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout {
		f.lg.mu.RLock()
		body, ctype, at := f.lg.body, f.lg.ctype, f.lg.at
		f.lg.mu.RUnlock()
		if body != nil {
			f.fellBack = true
			f.lg.counter.Add(1)
			h := f.ResponseWriter.Header()
			for _, k := range []string{"Content-Type", "Retry-After", "Content-Length", "Cache-Control"} {
				h.Del(k)
			}
			h.Set("Content-Type", ctype)
			h.Set("X-Junction-Fallback", "last-good-copy")
			h.Set("Age", strconv.Itoa(int(f.lg.clock().Sub(at).Seconds())))
			f.ResponseWriter.WriteHeader(http.StatusOK)
			_, _ = f.ResponseWriter.Write(body)
			return
		}
	}
	f.ResponseWriter.WriteHeader(code)
}

func (f *fallbackWriter) Write(b []byte) (int, error) {
	if f.status == 0 {
		f.WriteHeader(http.StatusOK)
	}
	if f.fellBack {
		return len(b), nil // the failure's own body is replaced by the copy
	}
	if f.status == http.StatusOK && !f.tooBig {
		if f.buf.Len()+len(b) > maxFallbackBody {
			f.tooBig = true
			f.buf.Reset()
		} else {
			f.buf.Write(b)
		}
	}
	return f.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (f *fallbackWriter) Unwrap() http.ResponseWriter { return f.ResponseWriter }
