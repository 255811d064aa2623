// Package rest holds the pieces every Junction HTTP API shares: JSON in and
// out with size limits, errors as RFC 9457 problem documents, request ids,
// access logs, panic recovery and a server with graceful shutdown.
package rest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/telemetry"
)

// DefaultBodyLimit is the largest request body Decode accepts unless told
// otherwise.
const DefaultBodyLimit = 64 << 10

// Problem is an RFC 9457 problem document. Code is a stable, machine-readable
// error code; RequestID lets a caller quote the request in a report.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	Code      string `json:"code"`
	RequestID string `json:"requestId,omitempty"`
}

// Status returns the HTTP status for an error of kind k.
func Status(k fault.Kind) int {
	switch k {
	case fault.Invalid:
		return http.StatusBadRequest
	case fault.NotFound:
		return http.StatusNotFound
	case fault.Conflict:
		return http.StatusConflict
	case fault.Unauthorized:
		return http.StatusUnauthorized
	case fault.Forbidden:
		return http.StatusForbidden
	case fault.Unavailable:
		return http.StatusServiceUnavailable
	case fault.Timeout:
		return http.StatusGatewayTimeout
	case fault.TooLarge:
		return http.StatusRequestEntityTooLarge
	case fault.RateLimited:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

// Code returns the stable error code of kind k ("not_found", …).
func Code(k fault.Kind) string { return strings.ReplaceAll(k.String(), " ", "_") }

// Error writes err as a problem document. Internal errors are logged with
// their detail and answered with a generic message; other kinds show their
// caller-safe message. An unauthorized answer carries WWW-Authenticate
// (Bearer, unless the caller set one already).
func Error(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	k := fault.KindOf(err)
	if k == fault.Internal {
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if k == fault.Unauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", "Bearer") // auth.Require names its realm; a handler's own refusal has none to name
	}
	WriteProblem(w, r, Status(k), Code(k), fault.Message(err))
}

// WriteProblem writes a problem document with the given status, code and
// detail. Its type is the code's page (TypeURI) for every code Junction
// answers with.
func WriteProblem(w http.ResponseWriter, r *http.Request, status int, code, detail string) {
	typ := "about:blank"
	if _, ok := problemTypes[code]; ok {
		typ = TypeURI(code)
	}
	p := Problem{
		Type:      typ,
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    detail,
		Instance:  r.URL.Path,
		Code:      code,
		RequestID: telemetry.RequestID(r.Context()),
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	// Unavailable or out of time (a dependency down, busy, slow): the
	// client may try again shortly, and is told when, unless the caller
	// knows better (a rate limit's own wait).
	if (status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout) && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

// SetRetryAfter tells the client to wait d before it tries again: a
// Retry-After of whole seconds, rounded up, at least 1. Set before
// WriteProblem, it replaces the 1 s a 503 or 504 gets by default.
func SetRetryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(d.Seconds())))))
}

// JSON writes v as a JSON response with the given status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Decode reads one JSON object from r's body into v. The body must be JSON
// (by Content-Type, when one is given), at most limit bytes (DefaultBodyLimit
// when limit is 0), contain no unknown fields and nothing after the object.
// Every failure is classified: Invalid, or TooLarge.
func Decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if limit <= 0 {
		limit = DefaultBodyLimit
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return fault.New(fault.Invalid, "the body must be application/json, not %q", ct)
		}
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, limit)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err, limit)
		}
		return fault.New(fault.Invalid, "the body must hold a single JSON object")
	}
	return nil
}

func decodeError(err error, limit int64) error {
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &maxErr):
		return fault.New(fault.TooLarge, "the body is larger than %d bytes", limit)
	case errors.Is(err, io.EOF):
		return fault.New(fault.Invalid, "the body is empty; a JSON object is expected")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fault.New(fault.Invalid, "the body ends in the middle of a JSON value")
	case errors.As(err, &syntaxErr):
		return fault.New(fault.Invalid, "the body is not valid JSON (at byte %d)", syntaxErr.Offset)
	case errors.As(err, &typeErr):
		if typeErr.Field != "" {
			return fault.New(fault.Invalid, "field %q must be a JSON %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()))
		}
		return fault.New(fault.Invalid, "the body must be a JSON object")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fault.New(fault.Invalid, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return fault.Wrap(fault.Invalid, err, "the body cannot be read")
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "number"
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	default:
		return "object"
	}
}

// NotFound answers every request with a 404 problem document.
func NotFound(w http.ResponseWriter, r *http.Request) {
	WriteProblem(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
}

// IntQuery returns the whole-number query parameter name of r, or def when
// it is absent; a malformed one is fault.Invalid.
func IntQuery(r *http.Request, name string, def int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fault.New(fault.Invalid, "%s must be a whole number", name)
	}
	return n, nil
}
