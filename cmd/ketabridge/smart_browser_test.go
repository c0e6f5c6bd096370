package main

// A SMART standalone launch in a real headless Chromium: the browser signs
// in on the gateway's login page, unticks one scope on the consent page,
// approves, and lands on the app's redirect URI; the test then exchanges the
// code and checks that the unticked scope was not granted.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is where the test expects Chromium (Debian's `chromium`).
const chromiumPath = "/usr/bin/chromium"

// requireChromiumEnv makes a missing Chromium a failure instead of a skip.
const requireChromiumEnv = "KETABRIDGE_TEST_REQUIRE_CHROMIUM"

// chromiumAllocator starts headless Chromium with the flags a closed network
// needs (without them Chromium hangs on background lookups) and a throwaway
// profile.
func chromiumAllocator(t *testing.T, ctx context.Context) (context.Context, context.CancelFunc) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	return chromedp.NewExecAllocator(ctx, opts...)
}

func TestSMARTBrowserStandaloneLaunch(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv(requireChromiumEnv) == "1" {
			t.Fatalf("%s is required (%s=1) but not usable: %v", chromiumPath, requireChromiumEnv, err)
		}
		t.Skipf("skipping the headless browser test: %s not installed (%v); install it with `apt-get install -y chromium` "+
			"or set %s=1 to make this a failure", chromiumPath, err, requireChromiumEnv)
	}
	e := startSMART(t)

	// The app's redirect URI: records the authorization response.
	got := make(chan url.Values, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		select {
		case got <- r.URL.Query():
		default:
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!DOCTYPE html><title>done</title><p id="done">Signed in.</p>`))
	}))
	defer app.Close()
	redirect := app.URL + "/callback"

	const unticked = "patient/Observation.rs"
	scope := "openid fhirUser launch/patient patient/Patient.rs " + unticked
	e.addPublicClient(t, "browser-app", redirect, "", scope)
	e.addUser(t, "browser-pat", "patient", "Patient/"+e.patient)
	a := e.app("browser-app", redirect, strings.Fields(scope)...)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, cancelAlloc := chromiumAllocator(t, ctx)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	box := chromedp.CSS(`input[name="scope"][value="` + unticked + `"]`)
	if err := chromedp.Do(bctx,
		chromedp.Navigate(a.authURL(e)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="username"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), "browser-pat"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), smartPassword),
		chromedp.Click(chromedp.CSS(`form[action="/auth/login"] button[type="submit"]`)),
		chromedp.WaitVisible(box),
		chromedp.Click(box),
	); err != nil {
		t.Fatalf("browser, login and consent page: %v", err)
	}
	checked, err := chromedp.Run(bctx, chromedp.JavascriptAttribute[bool](box, "checked"))
	if err != nil {
		t.Fatal(err)
	}
	if checked {
		t.Fatalf("%s is still ticked after the click", unticked)
	}
	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`button[name="action"][value="approve"]`)),
		chromedp.WaitVisible(chromedp.ID("done")),
	); err != nil {
		t.Fatalf("browser, approve and redirect: %v", err)
	}
	var q url.Values
	select {
	case q = <-got:
	case <-ctx.Done():
		t.Fatal("the browser never reached the redirect URI")
	}
	loc, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loc, redirect+"?") {
		t.Errorf("the browser is at %q, not the redirect URI", loc)
	}
	if q.Get("state") != a.state || q.Get("code") == "" {
		t.Fatalf("authorization response: %v", q)
	}

	tok := a.exchange(t, q.Get("code"))
	granted := scopeSet(extraString(t, tok, "scope"))
	if slices.Contains(granted, unticked) || !slices.Contains(granted, "patient/Patient.rs") {
		t.Fatalf("granted scope %v: want patient/Patient.rs without the unticked %s", granted, unticked)
	}
	if tok.Extra("patient") != e.patient {
		t.Errorf("patient %v, want %s", tok.Extra("patient"), e.patient)
	}
	if r := e.fhir(t, tok.AccessToken, "/Patient/"+e.patient); r.status != http.StatusOK {
		t.Errorf("GET the own Patient: %s", r)
	}
	if r := e.fhir(t, tok.AccessToken, "/Observation?patient="+e.patient); r.status != http.StatusForbidden {
		t.Errorf("GET Observations without the unticked scope: %s", r)
	}
}
