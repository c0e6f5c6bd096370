package course_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/ketabridge/ketabridge/server"
)

// BenchmarkCoursePage measures the viewer's two pages for the demo
// patient, whose course has server.DemoLongCourse (40) sessions: the course
// page (every section: trends, the 40 session rows, summary, safety) and one
// session's monitoring chart. "server" is the gateway's answer to the
// viewer's GET (every FHIR read of the page in process, rendering, the
// HTML sent back) timed by a Go client holding the viewer's session cookie;
// "browser" is the full page in headless Chromium (navigation to the load
// event: HTML, the stylesheet, layout). The target is under 1 s for
// a course of 40 sessions; docs/benchmarks.md has the figures.
//
//	go test -run '^$' -bench BenchmarkCoursePage -benchtime 20x ./apps/course
func BenchmarkCoursePage(b *testing.B) {
	needChromium(b)
	ctx := context.Background()
	bctx := browser(b, ctx)
	if err := chromedp.Do(bctx); err != nil {
		b.Fatalf("starting %s: %v", chromiumPath, err)
	}
	gw := startGateway(b)
	tab := incognito(b, bctx)
	run(b, tab, "standalone launch", chromedp.Navigate(gw.base+"/apps/course/"), login("patient", gw.creds.Patient), approve,
		chromedp.WaitVisible(chromedp.ID("sessions")))
	rows := eval[[]row](b, tab, rowsJS)
	if len(rows) != server.DemoLongCourse {
		b.Fatalf("the demo course has %d sessions, want %d", len(rows), server.DemoLongCourse)
	}
	var chart string
	for _, r := range rows {
		if r.Link != "" && r.Cells[2] == "finished" {
			chart = r.Link
			break
		}
	}
	if chart == "" {
		b.Fatal("no session has a chart link")
	}
	// Without the #monitoring fragment: navigating to the URL the tab is
	// already at plus a fragment would scroll, not load.
	chart, _, _ = strings.Cut(chart, "#")
	got, err := chromedp.Run(tab, chromedp.Action[network.GetCookiesResult](func(ctx context.Context, t *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{gw.base + "/apps/course/"}})
	}))
	if err != nil {
		b.Fatal(err)
	}
	var session *http.Cookie
	for _, c := range got.Cookies {
		if c.Name == "kb_course" {
			session = &http.Cookie{Name: c.Name, Value: c.Value}
		}
	}
	if session == nil {
		b.Fatal("no viewer session cookie after the launch")
	}
	pages := []struct{ name, url, mark string }{
		{"course", gw.base + "/apps/course/", `id="sessions"`},
		{"session", chart, `id="vitals"`},
	}
	for _, p := range pages {
		b.Run(p.name+"/server", func(b *testing.B) {
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, p.url, nil)
				req.AddCookie(session)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				body, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil || res.StatusCode != http.StatusOK || !strings.Contains(string(body), p.mark) {
					b.Fatalf("GET %s: %d %v", p.name, res.StatusCode, err)
				}
			}
		})
		b.Run(p.name+"/browser", func(b *testing.B) {
			id := strings.TrimSuffix(strings.TrimPrefix(p.mark, `id="`), `"`)
			run(b, tab, p.name, chromedp.Navigate(p.url), chromedp.WaitVisible(chromedp.ID(id)))
			for b.Loop() {
				// A reload: the same URL, fetched and laid out again.
				run(b, tab, p.name, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID(id)))
			}
		})
	}
}
