package rest_test

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/rest"
)

// FuzzDecode: any body is decoded or refused as the caller's fault
// (invalid, too large), never a panic or an internal error; what is
// accepted holds no field the type lacks and nothing after the object.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{`{"items":[{"sku":"JX-MUG","quantity":1}],"card":"4242"}`, `{"items":[]}`, `{"admin":true}`, `{} {}`, `[]`, `{"items":[{"sku":1}]}`, `{"card":"\u0000"}`, ``, `{"items":null}`} {
		f.Add([]byte(seed))
	}
	type line struct {
		SKU      string `json:"sku"`
		Quantity int    `json:"quantity"`
	}
	type order struct {
		Items []line `json:"items"`
		Card  string `json:"card"`
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		var got order
		err := rest.Decode(httptest.NewRecorder(), req, 1<<10, &got)
		if err != nil {
			if k := fault.KindOf(err); k != fault.Invalid && k != fault.TooLarge {
				t.Fatalf("%q: %v (%v), want invalid or too large", body, err, k)
			}
			return
		}
		var fields map[string]json.RawMessage
		if json.Unmarshal(body, &fields) != nil {
			t.Fatalf("accepted %q, which is not one JSON object", body)
		}
		for k := range fields {
			// encoding/json matches names case-insensitively.
			if !strings.EqualFold(k, "items") && !strings.EqualFold(k, "card") {
				t.Fatalf("accepted %q with the unknown field %q", body, k)
			}
		}
	})
}
