// Package httpapi serves user-service's REST API: login, the JWKS, and
// users.
package httpapi

import (
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/user"
	"github.com/junction-go/junction/rest"
)

// Handler returns the REST API of svc; v verifies access tokens.
func Handler(svc *user.Service, v *auth.Verifier, log *slog.Logger) http.Handler {
	h := &handler{svc: svc, log: log}
	authn := auth.Require(v, log)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/auth/login", h.login)
	mux.HandleFunc("POST /api/auth/refresh", h.refresh)
	mux.HandleFunc("POST /api/auth/logout", h.logout)
	mux.HandleFunc("GET /api/auth/jwks", h.jwks)
	mux.HandleFunc("GET /.well-known/jwks.json", h.jwks)
	mux.Handle("GET /api/users/me", authn(http.HandlerFunc(h.me)))
	mux.Handle("GET /api/users/{id}", authn(http.HandlerFunc(h.get)))
	mux.Handle("GET /api/admin/keys", authn(http.HandlerFunc(h.keys)))
	mux.Handle("POST /api/admin/keys/rotate", authn(http.HandlerFunc(h.rotate)))
	return rest.Chain(rest.Routes(mux), rest.RequestID, rest.AccessLog(log), rest.Recover(log), rest.Deadline)
}

// KeySet tells a request for the token keys: every other service needs
// them to verify anything, and they cost nothing to serve, so a server
// limit lets them through.
func KeySet(r *http.Request) bool {
	return r.Method == http.MethodGet && (r.URL.Path == "/.well-known/jwks.json" || r.URL.Path == "/api/auth/jwks")
}

type handler struct {
	svc *user.Service
	log *slog.Logger
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type loginResponse struct {
	AccessToken  string `json:"accessToken"`
	TokenType    string `json:"tokenType"`
	ExpiresIn    int    `json:"expiresIn"`
	RefreshToken string `json:"refreshToken"`
}

func tokenResponse(w http.ResponseWriter, tok user.Token) {
	w.Header().Set("Cache-Control", "no-store")
	rest.JSON(w, http.StatusOK, loginResponse{AccessToken: tok.AccessToken, TokenType: "Bearer", ExpiresIn: int(tok.ExpiresIn.Seconds()), RefreshToken: tok.RefreshToken})
}

type refreshRequest struct {
	RefreshToken string `json:"refreshToken"`
}

// refresh trades a refresh token for the next access and refresh tokens.
func (h *handler) refresh(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if err := rest.Decode(w, r, 1<<10, &req); err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	tok, err := h.svc.Refresh(r.Context(), req.RefreshToken)
	if errors.Is(err, user.ErrRefreshReused) {
		h.log.WarnContext(r.Context(), "a used refresh token came back: its sessions are revoked", "address", clientAddress(r))
	}
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	tokenResponse(w, tok)
}

// logout ends the session of a refresh token.
func (h *handler) logout(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if err := rest.Decode(w, r, 1<<10, &req); err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	if err := h.svc.Logout(r.Context(), req.RefreshToken); err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := rest.Decode(w, r, 4<<10, &req); err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	tok, err := h.svc.Login(r.Context(), req.Username, req.Password, clientAddress(r))
	var throttled *user.TooManyLogins
	if errors.As(err, &throttled) {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(throttled.Wait.Seconds()))))
	}
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	tokenResponse(w, tok)
}

type keyJSON struct {
	KeyID     string `json:"kid"`
	CreatedAt string `json:"createdAt"`
	Activates string `json:"activatesAt"`
	Retires   string `json:"retiresAt,omitempty"`
	Signing   bool   `json:"signing"`
}

func keysJSON(keys []user.SigningKey, signing string) []keyJSON {
	out := make([]keyJSON, 0, len(keys))
	for _, k := range keys {
		j := keyJSON{KeyID: k.ID, CreatedAt: k.Created.Format(time.RFC3339Nano), Activates: k.Activates.Format(time.RFC3339Nano), Signing: k.ID == signing}
		if !k.Retires.IsZero() {
			j.Retires = k.Retires.Format(time.RFC3339Nano)
		}
		out = append(out, j)
	}
	return out
}

// keys lists the signing keys (never their private halves).
func (h *handler) keys(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	keys, err := h.svc.Keys(p)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	rest.JSON(w, http.StatusOK, map[string]any{"items": keysJSON(keys, h.svc.Signing())})
}

// rotate makes a new key: {"publishDelay":"30s"} (30 s when absent).
func (h *handler) rotate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PublishDelay string `json:"publishDelay"`
	}
	if r.ContentLength != 0 {
		if err := rest.Decode(w, r, 1<<10, &req); err != nil {
			rest.Error(w, r, h.log, err)
			return
		}
	}
	delay := 30 * time.Second
	if req.PublishDelay != "" {
		d, err := time.ParseDuration(req.PublishDelay)
		if err != nil || d > time.Hour {
			rest.Error(w, r, h.log, fault.New(fault.Invalid, "publishDelay is a duration from %v to 1h", user.MinPublishDelay))
			return
		}
		delay = d
	}
	p, _ := auth.FromContext(r.Context())
	k, err := h.svc.Rotate(r.Context(), p, delay)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	h.log.InfoContext(r.Context(), "signing key rotated", "by", p.Username, "kid", k.ID, "activates_at", k.Activates)
	rest.JSON(w, http.StatusCreated, keysJSON([]user.SigningKey{k}, "")[0])
}

// clientAddress is who is logging in: the address the gateway saw (the
// last X-Forwarded-For entry, which it sets), or the peer's.
func clientAddress(r *http.Request) string {
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		hops := strings.Split(xff[len(xff)-1], ",")
		return strings.TrimSpace(hops[len(hops)-1])
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (h *handler) jwks(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=60")
	rest.JSON(w, http.StatusOK, h.svc.JWKS())
}

// userJSON is a user as the API shows it; never the password hash.
type userJSON struct {
	UserID      int64  `json:"userId"`
	Username    string `json:"username"`
	DisplayName string `json:"displayName"`
	Role        string `json:"role"`
	CreatedAt   string `json:"createdAt"`
}

func toJSON(u user.User) userJSON {
	return userJSON{UserID: u.ID, Username: u.Username, DisplayName: u.DisplayName, Role: u.Role, CreatedAt: u.CreatedAt.Format("2006-01-02T15:04:05.000Z07:00")}
}

func (h *handler) me(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	h.write(w, r, p, p.UserID)
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		rest.Error(w, r, h.log, fault.New(fault.Invalid, "user id must be a positive integer"))
		return
	}
	p, _ := auth.FromContext(r.Context())
	h.write(w, r, p, id)
}

func (h *handler) write(w http.ResponseWriter, r *http.Request, p auth.Principal, id int64) {
	u, err := h.svc.GetUser(r.Context(), p, id)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	rest.JSON(w, http.StatusOK, toJSON(u))
}
