package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// kidOf returns the key id in an access token's header.
func kidOf(t *testing.T, token string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// TestKeyRotationUnderLoad: `junction keys rotate` while customers log in,
// read and order without pause: the new key signs after its publish delay,
// tokens of the old key keep working, and no request fails.
func TestKeyRotationUnderLoad(t *testing.T) {
	s := startShop(t, nil, nil)
	old := s.customers[0].token
	oldKid := kidOf(t, old)

	var mu sync.Mutex
	var failures []string
	kids := map[string]int{}
	requests := 0
	fail := func(f string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(f, args...))
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			c := newClient(t, s.sys.Gateway)
			name := []string{"alice", "bob"}[w%2]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := c.do("POST", "/api/auth/login", map[string]string{"username": name, "password": "junction"})
				if r.Status != http.StatusOK {
					fail("login: %d %s", r.Status, r.Body)
					continue
				}
				var tok struct {
					AccessToken string `json:"accessToken"`
				}
				r.decode(t, &tok)
				c.token = tok.AccessToken
				mu.Lock()
				kids[kidOf(t, c.token)]++
				requests++
				mu.Unlock()
				for _, path := range []string{"/api/users/me", "/api/orders?limit=1"} {
					if r := c.do("GET", path, nil); r.Status != http.StatusOK {
						fail("GET %s with a token of %s: %d %s", path, kidOf(t, c.token), r.Status, r.Body)
					}
				}
				// The token from before the rotation, all along.
				oc := newClient(t, s.sys.Gateway)
				oc.token = old
				if r := oc.do("GET", "/api/users/me", nil); r.Status != http.StatusOK {
					fail("GET /api/users/me with the token from before: %d %s", r.Status, r.Body)
				}
				if i%10 == 0 { // an order: the gateway, order-service and user-service's gRPC verify it
					a := &attempt{key: fmt.Sprintf("rotate-%d-%d", w, i), items: []line{{SKU: "JX-PIN", Quantity: 1}}}
					s.place(c, a, "")
					if a.id == 0 && !a.refused {
						fail("order: %s", a.err)
					}
				}
				mu.Lock()
				requests += 3
				mu.Unlock()
			}
		})
	}
	out, err := exec.Command(binary, "keys", "rotate", "--gateway", s.sys.Gateway, "--publish-delay", "15s", "--json").CombinedOutput()
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatalf("junction keys rotate: %v\n%s", err, out)
	}
	var rotated []struct {
		KeyID string `json:"kid"`
	}
	if err := json.Unmarshal(out, &rotated); err != nil || len(rotated) != 1 || rotated[0].KeyID == oldKid {
		t.Fatalf("junction keys rotate printed %s (%v)", out, err)
	}
	newKid := rotated[0].KeyID
	eventually(t, 40*time.Second, "logins signed with the new key", func() error {
		mu.Lock()
		defer mu.Unlock()
		if kids[newKid] < 20 {
			return fmt.Errorf("%d tokens of the new key so far (%v)", kids[newKid], kids)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed across the rotation; the first: %v", len(failures), requests, failures[:min(5, len(failures))])
	}
	if kids[oldKid] == 0 {
		t.Errorf("no token of the old key after the rotation began: %v", kids)
	}
	out, err = exec.Command(binary, "keys", "list", "--gateway", s.sys.Gateway).CombinedOutput()
	if err != nil || !strings.Contains(string(out), newKid) || !strings.Contains(string(out), oldKid) {
		t.Errorf("junction keys list: %v\n%s", err, out)
	}
	t.Logf("%d requests across the rotation, none failed; tokens by key: %v", requests, kids)
}
