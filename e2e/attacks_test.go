package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/junction-go/junction/api/gen/inventory/v1"
	userv1 "github.com/junction-go/junction/api/gen/user/v1"
	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/discovery"
	userstore "github.com/junction-go/junction/internal/user/store"
	"github.com/junction-go/junction/sqldb"
)

// TestForgedTokens: a corpus of forged, altered and ill-formed tokens is
// refused by every verifier, each reached on its own port: the gateway,
// every service's HTTP API, the gRPC servers, the WebSocket: 401 (or
// Unauthenticated) at each. A valid token gets past each first (an answer
// other than 401, such as 403 for a customer at an admin route), so a
// refusal means the token, not the route.
// Headers that point at keys (jwk, jku, x5u, x5c) are never followed: a
// server they name records whether anyone came.
func TestForgedTokens(t *testing.T) {
	s := startShop(t, nil, nil)
	alice, bob := s.customers[0], s.customers[1]

	// The shop's real signing key, from user-service's database: tokens
	// with bad claims must be signed well to test the claims.
	ctx := context.Background()
	path := filepath.Join(s.sys.Data, "user-service", "user-service.db")
	for _, f := range []string{path, path + "-wal"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s, which holds the private keys, has mode %v, want 0600", filepath.Base(f), fi.Mode().Perm())
		}
	}
	db, err := sqldb.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := userstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := st.SigningKeys(ctx)
	db.Close()
	if err != nil || len(keys) == 0 {
		t.Fatalf("signing keys: %v %v", keys, err)
	}
	real := keys[len(keys)-1]
	pub := real.Private.Public().(ed25519.PublicKey)
	attacker, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	var followed atomic.Int64
	lure := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		followed.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"keys":[%s]}`, mustJSON(t, auth.PublicJWK(attacker)))
	}))
	defer lure.Close()

	now := time.Now()
	// The corpus is made from one valid token and its claims: alice's,
	// or the admin's for deadletter-service, which a customer's token is
	// not for (its audience).
	var who struct{ token, sub, name, role string }
	claims := func(edit ...any) jwt.MapClaims {
		c := jwt.MapClaims{"iss": auth.DefaultScope.Issuer, "aud": services.TokenAudiences(), "sub": who.sub,
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "name": who.name, "role": who.role}
		for i := 0; i+1 < len(edit); i += 2 {
			if edit[i+1] == nil {
				delete(c, edit[i].(string))
			} else {
				c[edit[i].(string)] = edit[i+1]
			}
		}
		return c
	}
	header := func(edit ...any) map[string]any {
		h := map[string]any{"kid": real.ID, "typ": auth.TokenType}
		for i := 0; i+1 < len(edit); i += 2 {
			h[edit[i].(string)] = edit[i+1]
		}
		return h
	}
	signed := func(method jwt.SigningMethod, key any, h map[string]any, c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(method, c)
		for k, v := range h {
			tok.Header[k] = v
		}
		out, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	b64 := func(v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }
	bobParts := strings.Split(bob.token, ".")
	jwks, _ := json.Marshal(auth.JWKS{Keys: []auth.JWK{auth.PublicJWK(real.Key)}})
	const control = "well signed, with the claims as they should be"
	corpusOf := func() map[string]string {
		parts := strings.Split(who.token, ".")
		none := func(alg string) string {
			return b64(`{"alg":"`+alg+`","typ":"at+jwt","kid":"`+real.ID+`"}`) + "." + parts[1] + "."
		}
		other := map[string]string{auth.RoleCustomer: auth.RoleAdmin, auth.RoleAdmin: auth.RoleCustomer}[who.role]
		return map[string]string{
			control:                                    signed(jwt.SigningMethodEdDSA, real.Private, header(), claims()),
			"alg none":                                 none("none"),
			"alg None":                                 none("None"),
			"alg NONE":                                 none("NONE"),
			"alg nOnE":                                 none("nOnE"),
			"a null signature":                         parts[0] + "." + parts[1] + ".",
			"bob's signature on these claims":          parts[0] + "." + parts[1] + "." + bobParts[2],
			"the claims, another role":                 parts[0] + "." + b64(strings.Replace(mustDecode(t, parts[1]), `"`+who.role+`"`, `"`+other+`"`, 1)) + "." + parts[2],
			"the shop's one old audience":              signed(jwt.SigningMethodEdDSA, real.Private, header(), claims("aud", []string{auth.DefaultScope.Audience})),
			"HS256 keyed with the public key":          signed(jwt.SigningMethodHS256, []byte(pub), header(), claims()),
			"HS384 keyed with the public key":          signed(jwt.SigningMethodHS384, []byte(pub), header(), claims()),
			"HS512 keyed with the JWKS":                signed(jwt.SigningMethodHS512, jwks, header(), claims()),
			"HS256 with a blank secret":                signed(jwt.SigningMethodHS256, []byte{}, header(), claims()),
			"an embedded jwk":                          signed(jwt.SigningMethodEdDSA, attacker.Private, header("kid", attacker.ID, "jwk", auth.PublicJWK(attacker)), claims()),
			"a jku to the attacker's keys":             signed(jwt.SigningMethodEdDSA, attacker.Private, header("kid", attacker.ID, "jku", lure.URL), claims()),
			"an x5u to the attacker":                   signed(jwt.SigningMethodEdDSA, attacker.Private, header("kid", attacker.ID, "x5u", lure.URL), claims()),
			"an x5c chain":                             signed(jwt.SigningMethodEdDSA, attacker.Private, header("kid", attacker.ID, "x5c", []string{"MIIB"}), claims()),
			"kid path traversal":                       signed(jwt.SigningMethodEdDSA, attacker.Private, header("kid", "../../../../dev/null"), claims()),
			"kid SQL injection":                        signed(jwt.SigningMethodEdDSA, attacker.Private, header("kid", "x' UNION SELECT 'k"), claims()),
			"the real kid, the attacker's key":         signed(jwt.SigningMethodEdDSA, attacker.Private, header(), claims()),
			"expired":                                  signed(jwt.SigningMethodEdDSA, real.Private, header(), claims("exp", now.Add(-time.Minute).Unix())),
			"not valid for an hour":                    signed(jwt.SigningMethodEdDSA, real.Private, header(), claims("nbf", now.Add(time.Hour).Unix())),
			"issued in an hour":                        signed(jwt.SigningMethodEdDSA, real.Private, header(), claims("iat", now.Add(time.Hour).Unix())),
			"no exp":                                   signed(jwt.SigningMethodEdDSA, real.Private, header(), claims("exp", nil)),
			"another issuer":                           signed(jwt.SigningMethodEdDSA, real.Private, header(), claims("iss", "https://evil.example")),
			"another audience":                         signed(jwt.SigningMethodEdDSA, real.Private, header(), claims("aud", []string{"elsewhere"})),
			"type JWT (an ID token, say)":              signed(jwt.SigningMethodEdDSA, real.Private, header("typ", "JWT"), claims()),
			"a role the shop has not":                  signed(jwt.SigningMethodEdDSA, real.Private, header(), claims("role", "root")),
			"a subject that is no user id":             signed(jwt.SigningMethodEdDSA, real.Private, header(), claims("sub", "alice")),
			"bad base64 in the header":                 "!!!." + parts[1] + "." + parts[2],
			"bad JSON in the payload":                  parts[0] + "." + b64("{not json") + "." + parts[2],
			"padded base64 signature":                  who.token + "==",
			"two segments":                             parts[0] + "." + parts[1],
			"four segments":                            who.token + "." + parts[2],
			"oversize":                                 signed(jwt.SigningMethodEdDSA, real.Private, header(), claims("pad", strings.Repeat("x", 8<<10))),
			"the token twice":                          who.token + who.token,
			"a signature with a stray bit (respelled)": respellToken(who.token),
		}
	}

	// Every verifier, each on its own port.
	reg := s.sys.registry(t)
	endpoint := func(service, kind string) string {
		v, err := reg.Lookup(ctx, service)
		if err != nil || len(v.Instances) == 0 {
			t.Fatalf("%s: %v", service, err)
		}
		return v.Instances[0].Endpoints[kind]
	}
	// Straight to each service's port as the gateway calls it (with its
	// certificate), and to each gRPC server as order-service: past mTLS
	// and the call table, the token alone decides.
	gatewayClient := &http.Client{Transport: s.sys.transportOf(t, "gateway-1"), Timeout: 10 * time.Second}
	httpCheck := func(base, path string) func(token string) (bool, string) {
		hc := gatewayClient
		if base == s.sys.Gateway {
			hc = &http.Client{Timeout: 10 * time.Second}
		}
		return func(token string) (bool, string) {
			req, _ := http.NewRequest("GET", base+path, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := hc.Do(req)
			if err != nil {
				return false, err.Error()
			}
			resp.Body.Close()
			return resp.StatusCode != http.StatusUnauthorized, resp.Status // 403, 404: past the token
		}
	}
	conn := func(service string) *grpc.ClientConn {
		return s.sys.grpcAs(t, "order-service-1", service, endpoint(service, discovery.EndpointGRPC))
	}
	users, stock := userv1.NewUserServiceClient(conn("user-service")), inventoryv1.NewInventoryServiceClient(conn("inventory-service"))
	grpcCheck := func(call func(ctx context.Context) error) func(token string) (bool, string) {
		return func(token string) (bool, string) {
			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), 10*time.Second)
			defer cancel()
			err := call(ctx)
			return status.Code(err) != codes.Unauthenticated, status.Code(err).String()
		}
	}
	var me struct {
		UserID int64 `json:"userId"`
	}
	alice.do("GET", "/api/users/me", nil).decode(t, &me)
	wsCheck := func(token string) (bool, string) {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(dctx, strings.Replace(s.sys.Gateway, "http://", "ws://", 1)+"/ws",
			&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
		if err != nil {
			return false, fmt.Sprint(err, resp)
		}
		defer c.CloseNow()
		b, _ := json.Marshal(map[string]any{"type": "subscribe", "orders": "mine"})
		_ = c.Write(dctx, websocket.MessageText, b)
		_, msg, err := c.Read(dctx)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(string(msg), `"subscribed"`), string(msg)
	}
	verifiers := map[string]func(string) (bool, string){
		"gateway GET /api/users/me":                     httpCheck(s.sys.Gateway, "/api/users/me"),
		"gateway /ws":                                   wsCheck,
		"user-service GET /api/users/me":                httpCheck("http://"+endpoint("user-service", discovery.EndpointHTTP), "/api/users/me"),
		"order-service GET /api/orders":                 httpCheck("http://"+endpoint("order-service", discovery.EndpointHTTP), "/api/orders"),
		"shipping-service GET /api/shipments/1":         httpCheck("http://"+endpoint("shipping-service", discovery.EndpointHTTP), "/api/shipments/1"),
		"deadletter-service GET /api/admin/deadletters": httpCheck("http://"+endpoint("deadletter-service", discovery.EndpointHTTP), "/api/admin/deadletters"),
		"notification-service GET /api/notifications":   httpCheck("http://"+endpoint("notification-service", discovery.EndpointHTTP), "/api/notifications"),
		"user-service gRPC GetUser": grpcCheck(func(ctx context.Context) error {
			_, err := users.GetUser(ctx, &userv1.UserRequest{UserId: me.UserID})
			return err
		}),
		"inventory-service gRPC CheckAvailability": grpcCheck(func(ctx context.Context) error {
			_, err := stock.CheckAvailability(ctx, &inventoryv1.CheckAvailabilityRequest{Lines: []*inventoryv1.Line{{Sku: "JX-MUG", Quantity: 1}}})
			return err
		}),
	}
	var adminMe struct {
		UserID int64 `json:"userId"`
	}
	s.admin.do("GET", "/api/users/me", nil).decode(t, &adminMe)
	tried, accepted := 0, 0
	for where, check := range verifiers {
		who.token, who.sub, who.name, who.role = alice.token, fmt.Sprint(me.UserID), "alice", auth.RoleCustomer
		if strings.HasPrefix(where, "deadletter-service") {
			who.token, who.sub, who.name, who.role = s.admin.token, fmt.Sprint(adminMe.UserID), "admin", auth.RoleAdmin
		}
		if ok, got := check(who.token); !ok {
			t.Fatalf("%s refuses %s's valid token (%s): nothing below would show", where, who.name, got)
		}
		for name, token := range corpusOf() {
			ok, got := check(token)
			if name == control {
				if !ok {
					t.Errorf("%s refuses a token signed with the real key and %s's claims (%s): the corpus is off", where, who.name, got)
				}
				continue
			}
			tried++
			if ok {
				accepted++
				t.Errorf("%s accepts a token with %s (%s)", where, name, got)
			}
		}
	}
	t.Logf("%d forged tokens tried at %d verifiers, %d accepted", tried, len(verifiers), accepted)
	if n := followed.Load(); n != 0 {
		t.Errorf("a key URL in a token's header was fetched %d times", n)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustDecode(t *testing.T, part string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// respellToken sets the unused last bit of the signature's base64url: a
// lenient decoder reads the same signature.
func respellToken(token string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, token[len(token)-1])
	return token[:len(token)-1] + string(alphabet[i^1])
}
