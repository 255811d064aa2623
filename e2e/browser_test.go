package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/junction-go/junction/internal/paymentsim"
)

// chromium returns the path of a Chromium (Debian's chromium package), or
// skips the test without one (fails with JUNCTION_REQUIRE_ALL=1).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("JUNCTION_REQUIRE_ALL") == "1" {
		t.Fatal("Chromium is required (JUNCTION_REQUIRE_ALL=1): apt-get install -y chromium")
	}
	t.Skip("no Chromium on this machine (apt-get install -y chromium)")
	return ""
}

// browser is one headless Chromium tab.
type browser struct {
	t   *testing.T
	ctx context.Context
	// shots is where the screenshots go: docs/img with -update, else a
	// temporary folder.
	shots string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // as root
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, ctx: ctx, shots: t.TempDir()}
	if *updateDocs {
		b.shots = filepath.Join("..", "docs", "img")
	}
	return b
}

// run runs actions, each step bounded so a page that never gets there
// fails the test with what it was waiting for.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(what, err)
	}
}

// fail ends the test with what the page shows.
func (b *browser) fail(what string, err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main")?.innerText || ""`))
	alert, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("alert")?.textContent || ""`))
	b.t.Fatalf("%s: %v\npage: %s\nalert: %s", what, err, page, alert)
}

// eval returns the value of the JavaScript expression expr.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail(expr, err)
	}
	return v
}

// shot writes a screenshot of the whole page as name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.fail("screenshot "+name, err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// waitJS waits until the JavaScript expression cond is true.
func waitJS(cond string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(50*time.Millisecond))
}

// TestBrowser: in Chromium, a customer logs in, orders and sees confirmed,
// then shipped, arrive on the order page without a reload; a declined card
// ends rejected with its reason; an administrator sees that order's
// journey across at least seven services on /ops and redrives a dead
// letter from the page; a customer gets no data there. Each page's
// screenshot is written (to docs/img with -update).
func TestBrowser(t *testing.T) {
	b := newBrowser(t)
	s := startShop(t, []string{"JUNCTION_DISPATCH_DELAY=1s"}, nil)
	shop := s.sys.Gateway

	// Log in and order a mug.
	b.run("the storefront", chromedp.Navigate(shop+"/"), chromedp.WaitVisible(chromedp.CSS(`[data-sku="JX-MUG"]`)))
	b.shot("storefront")
	b.run("log in as alice",
		chromedp.Click(chromedp.CSS(`#login-link`)),
		chromedp.WaitVisible(chromedp.CSS(`#password`)),
		chromedp.SetValue(chromedp.CSS(`#username`), "alice"),
		chromedp.SetValue(chromedp.CSS(`#password`), "junction"),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-sku="JX-MUG"] .add`)),
		waitJS(`document.getElementById("live-state")?.textContent === "live"`),
	)
	b.run("order a mug",
		chromedp.Click(chromedp.CSS(`[data-sku="JX-MUG"] .add`)),
		chromedp.Navigate(shop+"/#/cart"),
		chromedp.WaitVisible(chromedp.CSS(`#pay`)),
	)
	b.shot("cart")
	b.run("pay",
		chromedp.Click(chromedp.CSS(`#pay`)),
		waitJS(`/^#\/orders\/\d+$/.test(location.hash)`),
	)
	orderURL := eval[string](b, `window.notReloaded = true; location.href`)
	b.run("confirmed arrives live",
		waitJS(`document.querySelector('#timeline [data-status="confirmed"]') !== null`),
		waitJS(`document.getElementById("order-status")?.textContent === "confirmed"`),
	)
	b.run("shipped arrives live, with no reload",
		waitJS(`document.querySelector('#timeline [data-status="shipped"]') !== null && window.notReloaded === true`),
		waitJS(`document.getElementById("order-status")?.textContent === "shipped"`),
	)
	steps := eval[int](b, `document.querySelectorAll("#timeline li").length`)
	if steps != len(placedHistory) {
		t.Errorf("the order page shows %d events, want %d", steps, len(placedHistory))
	}
	b.shot("order")
	placed := orderURL[strings.LastIndex(orderURL, "/")+1:]

	// A declined card: rejected, with the reason, and the compensation.
	b.run("order with the declined card",
		chromedp.Navigate(shop+"/#/"),
		chromedp.WaitVisible(chromedp.CSS(`[data-sku="JX-MUG"] .add`)),
		chromedp.Click(chromedp.CSS(`[data-sku="JX-MUG"] .add`)),
		chromedp.Navigate(shop+"/#/cart"),
		chromedp.WaitVisible(chromedp.CSS(`#card`)),
		chromedp.SetValue(chromedp.CSS(`#card`), paymentsim.DeclinedCard),
		chromedp.Click(chromedp.CSS(`#pay`)),
		waitJS(`/^#\/orders\/\d+$/.test(location.hash) && location.hash !== "#/orders/`+placed+`"`),
		waitJS(`document.getElementById("order-status")?.textContent === "rejected"`),
		waitJS(`document.getElementById("reason")?.textContent?.includes("declined")`),
		waitJS(`document.querySelector("#timeline .ev.undo") !== null`),
	)
	b.shot("order-rejected")
	b.run("a phone-sized screen", chromedp.EmulateViewport(390, 844))
	b.shot("order-phone")
	b.run("back to a desktop", chromedp.EmulateViewport(1280, 900))

	// A customer on /ops: no data.
	b.run("a customer on /ops",
		chromedp.Navigate(shop+"/ops"),
		waitJS(`document.querySelector("h1")?.textContent === "Administrators only"`),
	)
	tables := eval[int](b, `document.querySelectorAll("main table").length`)
	if tables != 0 {
		t.Errorf("a customer sees %d tables on /ops, want none", tables)
	}

	// The administrator: overview, journey, dead letter redrive.
	poison(t, s.sys, "browser-poison")
	eval[bool](b, `sessionStorage.clear(), true`) // the customer signs out

	b.run("the admin's login",
		chromedp.Navigate(shop+"/ops#/overview"),
		chromedp.WaitVisible(chromedp.CSS(`#password`)),
		chromedp.SetValue(chromedp.CSS(`#username`), "admin"),
		chromedp.SetValue(chromedp.CSS(`#password`), "junction"),
		chromedp.Click(chromedp.CSS(`#login`)),
		waitJS(`document.querySelector("h1")?.textContent === "Overview" && document.querySelectorAll("main table").length >= 4`),
		// Two refreshes, so rates show.
		waitJS(`Number(document.body.dataset.refreshes) >= 2`),
	)
	b.shot("ops-overview")
	// What each process admits: order-service's admission and the
	// services' server limits, as shipped.
	rows := eval[[]string](b, `[...document.querySelectorAll("main th[scope=row]")].map((th) => th.textContent)`)
	for _, want := range []string{"order-service-1 order admission", "inventory-service-1 server limit", "gateway-1 throttle of new orders"} {
		if !slices.Contains(rows, want) {
			t.Errorf("the overview has no row %q; its rows: %q", want, rows)
		}
	}
	b.run("the order's journey",
		chromedp.Navigate(shop+"/ops#/journey?order="+placed),
		waitJS(`document.querySelectorAll("#journey .row").length > 0`),
	)
	services := eval[int](b, `new Set([...document.querySelectorAll("#journey .row")].map((r) => r.dataset.service)).size`)
	if services < 7 {
		t.Errorf("the journey of order %s spans %d services, want at least 7", placed, services)
	}
	b.shot("ops-journey")
	b.run("redrive the dead letter",
		chromedp.Navigate(shop+"/ops#/deadletters"),
		waitJS(`document.querySelector("[data-redrive]") !== null`),
	)
	b.shot("ops-deadletters")
	b.run("redrive",
		chromedp.Click(chromedp.CSS(`[data-redrive]`)),
		waitJS(`[...document.querySelectorAll("main td")].some((td) => td.textContent.startsWith("redriven"))`),
	)
	var page struct {
		Items []struct {
			MessageID string `json:"messageId"`
			Status    string `json:"status"`
		} `json:"items"`
	}
	s.admin.do("GET", "/api/admin/deadletters", nil).decode(t, &page)
	// Redriven once (still poison, it may have died again since).
	if !slices.ContainsFunc(page.Items, func(d struct {
		MessageID string `json:"messageId"`
		Status    string `json:"status"`
	}) bool {
		return d.MessageID == "browser-poison" && d.Status == "redriven"
	}) {
		t.Errorf("dead letters after the redrive: %+v, want browser-poison redriven", page.Items)
	}
	if !slices.ContainsFunc(s.sys.instanceLog("deadletter-service-1"), func(r logRecord) bool { return r.Msg == "dead letter redriven" && r.By == "admin" }) {
		t.Error("the redrive is not logged with who did it")
	}
	b.run("the sagas", chromedp.Navigate(shop+"/ops#/sagas"), waitJS(`document.querySelectorAll("main tbody tr").length >= 2`))
	b.shot("ops-sagas")
	b.run("the faults", chromedp.Navigate(shop+"/ops#/faults"), chromedp.WaitVisible(chromedp.CSS(`#set-faults`)))
	b.shot("ops-faults")
	// Break the payment provider from the page, then mend it.
	// The page is drawn again from the provider's answer: a new checkbox.
	rendered := func(checked bool) chromedp.Action[chromedp.Void] {
		return waitJS(fmt.Sprintf(`((el) => el && el !== window.shown && el.checked === %t)(document.getElementById("outage"))`, checked))
	}
	eval[bool](b, `window.shown = document.getElementById("outage"), true`)
	b.run("an outage from the page",
		chromedp.Click(chromedp.CSS(`#outage`)),
		chromedp.Click(chromedp.CSS(`#set-faults`)),
		rendered(true),
	)
	var faults struct {
		Outage bool `json:"outage"`
	}
	s.admin.do("GET", "/api/admin/ops/provider", nil).decode(t, &faults)
	if !faults.Outage {
		t.Error("the outage set on the Faults page is not the provider's")
	}
	eval[bool](b, `window.shown = document.getElementById("outage"), true`)
	b.run("mend it from the page",
		chromedp.Click(chromedp.CSS(`#clear-faults`)),
		rendered(false),
	)
	s.admin.do("GET", "/api/admin/ops/provider", nil).decode(t, &faults)
	if faults.Outage {
		t.Error("the Clear button left the provider's outage on")
	}
	t.Logf("screenshots in %s", b.shots)
}
