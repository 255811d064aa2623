package junction_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/junction-go/junction"

// services are the folders under internal/ that are services: none may
// import another.
var services = []string{"user", "order", "inventory", "payment", "shipping", "notification", "deadletter", "gateway", "registry", "paymentsim"}

// domains are the services whose root package holds the domain and must not
// touch a driver or transport; their sub-packages adapt one technology each.
var domains = []string{"user", "order", "inventory", "payment", "shipping", "notification", "deadletter"}

// toolkit are the importable packages beneath the services.
var toolkit = []string{"bus", "outbox", "saga", "discovery", "resilience", "auth", "identity", "telemetry", "rest", "fault", "sqldb"}

// transports are imports a domain package must not make.
var transports = []string{
	"net/http", "database/sql", "google.golang.org/grpc", "github.com/nats-io/",
	"github.com/twmb/franz-go", "github.com/rabbitmq/amqp091-go", "github.com/go-stomp/stomp",
	"modernc.org/sqlite", "github.com/jackc/pgx", "github.com/coder/websocket", "github.com/pressly/goose",
}

// persistence are the toolkit's storage packages, a domain package's
// store's business, not its own.
var persistence = []string{module + "/sqldb", module + "/outbox"}

// notForStores are imports a store package must not make: it keeps state
// in its database and talks to nothing else.
var notForStores = []string{
	"net/http", "google.golang.org/grpc", "github.com/nats-io/", "github.com/twmb/franz-go", "github.com/rabbitmq/amqp091-go",
	"github.com/go-stomp/stomp", module + "/bus/natsbus", module + "/bus/kafkabus", module + "/bus/rabbitbus", module + "/bus/stompbus",
	module + "/discovery", module + "/resilience",
}

// brokerClients are imports the bus core must not make.
var brokerClients = []string{"github.com/nats-io/", "github.com/twmb/franz-go", "github.com/rabbitmq/amqp091-go", "github.com/go-stomp/stomp"}

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// rel returns p relative to the module ("internal/user/store"), or "" for
// packages outside it.
func rel(p string) string {
	if p == module {
		return "."
	}
	r, ok := strings.CutPrefix(p, module+"/")
	if !ok {
		return ""
	}
	return r
}

// serviceOf returns the service a module-relative path belongs to, or "".
func serviceOf(r string) string {
	parts := strings.Split(r, "/")
	if len(parts) >= 2 && parts[0] == "internal" && slices.Contains(services, parts[1]) {
		return parts[1]
	}
	return ""
}

func hasPrefix(imp string, list []string) bool {
	for _, p := range list {
		if imp == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(imp, p)) || strings.HasPrefix(imp, p+"/") {
			return true
		}
	}
	return false
}

// violations returns every break of DESIGN.md's import rules in pkgs.
func violations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		from := rel(p.ImportPath)
		if from == "" {
			continue
		}
		svc := serviceOf(from)
		top := strings.Split(from, "/")[0]
		for _, imp := range slices.Concat(p.Imports, p.TestImports, p.XTestImports) {
			to := rel(imp)
			if other := serviceOf(to); svc != "" && other != "" && other != svc {
				out = append(out, from+" imports another service: "+to)
			}
			if slices.Contains(toolkit, top) && strings.HasPrefix(to, "internal/") {
				out = append(out, from+" (toolkit) imports a service or internal package: "+to)
			}
			if top == "api" && to != "" && !strings.HasPrefix(to, "api/") {
				out = append(out, from+" (wire contracts) imports "+to)
			}
		}
		// The rules below concern what the package itself is built from.
		for _, imp := range p.Imports {
			to := rel(imp)
			if svc != "" && slices.Contains(domains, svc) && from == "internal/"+svc {
				if hasPrefix(imp, transports) {
					out = append(out, from+" (domain) imports a driver or transport: "+imp)
				}
				if strings.HasPrefix(to, from+"/") {
					out = append(out, from+" (domain) imports its own adapter: "+to)
				}
				if hasPrefix(imp, persistence) {
					out = append(out, from+" (domain) imports persistence, its store's business: "+to)
				}
			}
			if svc != "" && strings.HasSuffix(from, "/store") && hasPrefix(imp, notForStores) {
				out = append(out, from+" (store) imports a transport or a client of another system: "+imp)
			}
			if from == "bus" && hasPrefix(imp, brokerClients) {
				out = append(out, "bus imports a broker client: "+imp)
			}
		}
	}
	return out
}

func TestImportRules(t *testing.T) {
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,TestImports,XTestImports", "./...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; the rule check would be vacuous", len(pkgs))
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

// TestImportRulesCatchViolations proves the checker is not vacuous: each
// rule fires on a package that breaks it.
func TestImportRulesCatchViolations(t *testing.T) {
	m := module + "/"
	tests := []struct {
		name string
		pkg  pkg
	}{
		{"service imports service", pkg{ImportPath: m + "internal/order/clients", Imports: []string{m + "internal/user"}}},
		{"domain imports transport", pkg{ImportPath: m + "internal/order", Imports: []string{"net/http"}}},
		{"domain imports driver", pkg{ImportPath: m + "internal/user", Imports: []string{"modernc.org/sqlite"}}},
		{"domain imports its adapter", pkg{ImportPath: m + "internal/inventory", Imports: []string{m + "internal/inventory/store"}}},
		{"toolkit imports service", pkg{ImportPath: m + "discovery", Imports: []string{m + "internal/registry"}}},
		{"bus imports broker", pkg{ImportPath: m + "bus", Imports: []string{"github.com/nats-io/nats.go"}}},
		{"api imports toolkit", pkg{ImportPath: m + "api/gen/user/v1", Imports: []string{m + "auth"}}},
		{"domain imports the outbox", pkg{ImportPath: m + "internal/shipping", Imports: []string{m + "outbox"}}},
		{"domain imports sqldb", pkg{ImportPath: m + "internal/payment", Imports: []string{m + "sqldb"}}},
		{"store imports a broker adapter", pkg{ImportPath: m + "internal/shipping/store", Imports: []string{m + "bus/natsbus"}}},
		{"store imports net/http", pkg{ImportPath: m + "internal/payment/store", Imports: []string{"net/http"}}},
		{"store imports discovery", pkg{ImportPath: m + "internal/order/store", Imports: []string{m + "discovery"}}},
	}
	for _, tt := range tests {
		if got := violations([]pkg{tt.pkg}); len(got) != 1 {
			t.Errorf("%s: violations = %q, want one", tt.name, got)
		}
	}
	fine := []pkg{
		{ImportPath: m + "internal/order/store", Imports: []string{"database/sql", m + "internal/order", m + "sqldb"}},
		{ImportPath: m + "cmd/junction", Imports: []string{m + "internal/order", m + "internal/user"}},
		{ImportPath: m + "internal/order", Imports: []string{m + "auth", m + "fault", "context"}},
	}
	if got := violations(fine); len(got) != 0 {
		t.Errorf("violations of allowed imports = %q, want none", got)
	}
}
