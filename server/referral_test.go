package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/conformance"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/postgres"
	redisstore "github.com/ketabridge/ketabridge/store/redis"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// referralEnv is a gateway on loopback with the demo data, a partner
// clinic's backend client and the clinic's EHR client, each with a token
// from the gateway's own token endpoint.
type referralEnv struct {
	g                   *Gateway
	base                string
	partner, ehr, other string // access tokens
	// tokenURL is the gateway's token endpoint (token registers more
	// clients).
	tokenURL string
}

func newReferralEnv(t *testing.T) *referralEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("ingests the demo data set")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	cfg, err := parse([]string{"--data-dir", t.TempDir(), "--base-url", base,
		"--clinic-organization", synth.OrgClinic}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g, err := Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		<-served
		_ = g.Close()
	})
	if err := g.LoadDemo(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { served <- g.Serve(ctx, ln) }()
	token := func(id, role, org, scope string) string {
		bk, err := auth.NewBackendKey(id)
		if err != nil {
			t.Fatal(err)
		}
		c, err := bk.Client(id, scope, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c.Role, c.Organization = role, org
		if err := g.RegisterClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		tok, err := bk.AccessToken(ctx, http.DefaultClient, cfg.TokenEndpoint(), cfg.TokenEndpoint(), scope)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	partnerScope := "system/Task.crus system/ServiceRequest.c system/Patient.c system/Condition.c system/Observation.c"
	return &referralEnv{
		g:        g,
		base:     base,
		tokenURL: cfg.TokenEndpoint(),
		partner:  token("riverbend", "partner", orgID(synth.OrgPartnerRiverbend), partnerScope),
		ehr:      token("lakeside-ehr", "ehr", orgID(synth.OrgClinic), "system/*.rs system/Task.u"),
		other:    token("northgate", "partner", orgID(synth.OrgPartnerNorthgate), partnerScope),
	}
}

// replicaPair opens two replicas sharing a fresh PostgreSQL schema and
// Redis key prefix, ingests records (keep chooses them from one synthetic
// patient's) at the first, and registers the partner and EHR clients.
func replicaPair(t *testing.T, keep func(raw json.RawMessage) bool) (*referralEnv, *referralEnv) {
	dbURL := storetest.ServiceURL(t, "KETABRIDGE_TEST_DATABASE_URL")
	redisURL := storetest.ServiceURL(t, "KETABRIDGE_TEST_REDIS_URL")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	name := fmt.Sprintf("kb_ref_%d", time.Now().UnixNano())
	schemaURL, drop, err := postgres.NewSchema(ctx, dbURL, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drop(context.Background()) })
	prefix := "ketabridge-test:" + name + ":"
	rc, err := redisstore.Connect(redisURL, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.DeleteAll(context.Background()); rc.Close() })

	lnA, errA := net.Listen("tcp", "127.0.0.1:0")
	lnB, errB := net.Listen("tcp", "127.0.0.1:0")
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	public := "http://" + lnA.Addr().String()
	open := func(ln net.Listener) *Gateway {
		cfg, err := parse([]string{"--data-dir", t.TempDir(), "--base-url", public, "--clinic-organization", synth.OrgClinic,
			"--database-url", schemaURL, "--redis-url", redisURL, "--redis-prefix", prefix}, nil)
		if err != nil {
			t.Fatal(err)
		}
		g, err := Open(ctx, cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- g.Serve(ctx, ln) }()
		t.Cleanup(func() {
			cancel()
			<-served
			_ = g.Close()
		})
		return g
	}
	a := open(lnA)
	raw, err := SynthRecords(1, demoSeed, DemoStart)
	if err != nil {
		t.Fatal(err)
	}
	var recs []json.RawMessage
	for _, r := range raw {
		if keep(r) {
			recs = append(recs, r)
		}
	}
	if _, sum, err := a.Ingester().Ingest(ctx, recs); err != nil || sum.Rejected > 0 {
		t.Fatalf("records: %v, %+v", err, sum)
	}
	b := open(lnB)
	token := func(id, role, org, scope string) string {
		bk, err := auth.NewBackendKey(id)
		if err != nil {
			t.Fatal(err)
		}
		c, err := bk.Client(id, scope, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c.Role, c.Organization = role, org
		if err := a.RegisterClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		tok, err := bk.AccessToken(ctx, http.DefaultClient, public+"/auth/token", public+"/auth/token", scope)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	eA := &referralEnv{g: a, base: public, tokenURL: public + "/auth/token",
		partner: token("riverbend", "partner", orgID(synth.OrgPartnerRiverbend), "system/Task.cru system/ServiceRequest.c system/Patient.c system/Condition.c system/Observation.c"),
		ehr:     token("lakeside-ehr", "ehr", orgID(synth.OrgClinic), "system/*.rs system/Task.u")}
	eB := *eA
	eB.g, eB.base = b, "http://"+lnB.Addr().String()
	return eA, &eB
}

// TestReferralAcrossReplicas runs the write path on two replicas sharing
// PostgreSQL and Redis: a referral posted at one is served at the other,
// a Task update at one is seen at the other at once (the read cache of
// every replica drops what changed), and two updates from the same
// version made at the two replicas at once: one wins, the other is 412.
func TestReferralAcrossReplicas(t *testing.T) {
	// The directory only: the two organizations a referral names.
	eA, eB := replicaPair(t, func(r json.RawMessage) bool { return bytes.Contains(r, []byte(`"kind":"organization"`)) })

	id, _ := eA.postReferral(t, example(t, "inbound-referral.json", ""), http.StatusCreated)
	if task, etag := eB.task(t, id); etag != `W/"1"` || task["status"] != "requested" {
		t.Fatalf("at B: %s %v", etag, task["status"])
	}
	// B has the Task cached; an update at A is seen at B at once.
	wantStatus(t, "received at A", eA.move(t, eA.ehr, id, `W/"1"`, "received", nil), http.StatusOK)
	if task, etag := eB.task(t, id); etag != `W/"2"` || task["status"] != "received" {
		t.Fatalf("at B after the update at A: %s %v", etag, task["status"])
	}
	if n := eB.total(t, eB.ehr, "Task?status=received&_id="+id); n != 1 {
		t.Errorf("search at B by the new status: %d", n)
	}
	// Re-sent at B: nothing new.
	eB.postReferral(t, example(t, "inbound-referral.json", ""), http.StatusOK)
	// Two updates from version 2, one at each replica, at once.
	cur, _ := eA.task(t, id)
	cur["status"] = "accepted"
	body, _ := json.Marshal(cur)
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	for i, e := range []*referralEnv{eA, eB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = e.do(t, http.MethodPut, "/fhir/Task/"+id, e.ehr, body, "If-Match", `W/"2"`).status
		}()
	}
	wg.Wait()
	if !(statuses[0] == http.StatusOK && statuses[1] == http.StatusPreconditionFailed) &&
		!(statuses[1] == http.StatusOK && statuses[0] == http.StatusPreconditionFailed) {
		t.Errorf("statuses %v, want one 200 and one 412", statuses)
	}
	if _, etag := eB.task(t, id); etag != `W/"3"` {
		t.Errorf("after the race: %s", etag)
	}
	// The rest of the referral's life alternates between the replicas.
	wantStatus(t, "in-progress at A", eA.move(t, eA.ehr, id, `W/"3"`, "in-progress", nil), http.StatusOK)
	output := []any{map[string]any{"type": map[string]any{"text": "consult note"},
		"valueReference": map[string]any{"reference": "Organization/" + orgID(synth.OrgClinic)}}}
	wantStatus(t, "completed at B", eB.move(t, eB.ehr, id, `W/"4"`, "completed", map[string]any{"output": output}), http.StatusOK, `"code":"7.0"`)
	if task, etag := eA.task(t, id); etag != `W/"5"` || task["status"] != "completed" {
		t.Errorf("at A after the completion at B: %s %v", etag, task["status"])
	}
	rej, _ := eB.postReferral(t, example(t, "inbound-referral.json", "RB-2026-0143"), http.StatusCreated)
	wantStatus(t, "received at A", eA.move(t, eA.ehr, rej, `W/"1"`, "received", nil), http.StatusOK)
	wantStatus(t, "reject without reason at B", eB.move(t, eB.ehr, rej, `W/"2"`, "rejected", nil), http.StatusUnprocessableEntity, "statusReason")
	wantStatus(t, "rejected at B", eB.move(t, eB.ehr, rej, `W/"2"`, "rejected",
		map[string]any{"statusReason": map[string]any{"text": "no capacity"}}), http.StatusOK, `"code":"4.0"`)
	wantStatus(t, "illegal at A", eA.move(t, eA.ehr, rej, `W/"3"`, "accepted", nil), http.StatusConflict, "nothing moves it")
}

// token registers a backend client with role and organization and
// returns an access token for scope.
func (e *referralEnv) token(t *testing.T, id, role, org, scope string) string {
	t.Helper()
	bk, err := auth.NewBackendKey(id)
	if err != nil {
		t.Fatal(err)
	}
	c, err := bk.Client(id, scope, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c.Role, c.Organization = role, org
	if err := e.g.RegisterClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	tok, err := bk.AccessToken(context.Background(), http.DefaultClient, e.tokenURL, e.tokenURL, scope)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// awaitAudit waits until the audit trail holds, for each named want, a
// record it matches (the audit writer flushes in the background).
func awaitAudit(t *testing.T, g *Gateway, want map[string]func(store.AuditRecord) bool) {
	t.Helper()
	as := g.store.(store.AuditStore)
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, err := as.ListAudit(context.Background(), time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var missing []string
		for name, f := range want {
			if !slices.ContainsFunc(recs, f) {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no AuditEvent of %v", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func orgID(clinicID string) string { return mapping.ResourceID(clinic.KindOrganization, clinicID) }

func (r edgeAnswer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("%d %s: %v", r.status, r.body, err)
	}
	return m
}

func (e *referralEnv) do(t *testing.T, method, path, tok string, body []byte, hdr ...string) edgeAnswer {
	t.Helper()
	if body != nil {
		hdr = append([]string{"Content-Type", "application/fhir+json"}, hdr...)
	}
	return edgeDo(t, method, e.base+path, tok, string(body), hdr...)
}

// example reads an example of docs/referrals.md, with its ServiceRequest
// identifier's value replaced when value is not empty (a new referral).
func example(t *testing.T, name, value string) []byte {
	t.Helper()
	b, err := os.ReadFile("../docs/referrals/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if value != "" {
		b = bytes.ReplaceAll(b, []byte("RB-2026-0042"), []byte(value))
	}
	return b
}

// total runs a search and returns its total.
func (e *referralEnv) total(t *testing.T, tok, query string) int {
	t.Helper()
	r := e.do(t, http.MethodGet, "/fhir/"+query+"&_total=accurate", tok, nil)
	if r.status != http.StatusOK {
		t.Fatalf("%s: %d %s", query, r.status, r.body)
	}
	n, _ := r.json(t)["total"].(float64)
	return int(n)
}

// postReferral posts a referral and returns the Task's id.
func (e *referralEnv) postReferral(t *testing.T, body []byte, want int) (string, map[string]any) {
	t.Helper()
	r := e.do(t, http.MethodPost, "/fhir", e.partner, body)
	if r.status != want {
		t.Fatalf("POST /fhir: %d, want %d: %s", r.status, want, r.body)
	}
	b := r.json(t)
	entries, _ := b["entry"].([]any)
	if b["type"] != "transaction-response" || len(entries) == 0 {
		t.Fatalf("not a transaction-response: %s", r.body)
	}
	loc := entries[0].(map[string]any)["response"].(map[string]any)["location"].(string)
	id := strings.Split(strings.TrimPrefix(loc, "Task/"), "/")[0]
	return id, b
}

func (e *referralEnv) task(t *testing.T, id string) (map[string]any, string) {
	t.Helper()
	r := e.do(t, http.MethodGet, "/fhir/Task/"+id, e.ehr, nil)
	if r.status != http.StatusOK {
		t.Fatalf("read Task: %d %s", r.status, r.body)
	}
	return r.json(t), r.header.Get("ETag")
}

// move PUTs the Task with status (and extra members) as tok, If-Match
// ifMatch.
func (e *referralEnv) move(t *testing.T, tok, id, ifMatch, status string, extra map[string]any) edgeAnswer {
	t.Helper()
	cur, _ := e.task(t, id)
	cur["status"] = status
	for k, v := range extra {
		cur[k] = v
	}
	b, _ := json.Marshal(cur)
	hdr := []string{}
	if ifMatch != "" {
		hdr = []string{"If-Match", ifMatch}
	}
	return e.do(t, http.MethodPut, "/fhir/Task/"+id, tok, b, hdr...)
}

func wantStatus(t *testing.T, what string, r edgeAnswer, status int, says ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: %d, want %d: %s", what, r.status, status, r.body)
	}
	for _, s := range says {
		if !strings.Contains(string(r.body), s) {
			t.Errorf("%s: answer does not say %q: %s", what, s, r.body)
		}
	}
}

// TestReferralInbound drives an inbound referral end to end with real
// tokens (docs/referrals.md; docs/design/security.md RFL-1 to RFL-4).
func TestReferralInbound(t *testing.T) {
	e := newReferralEnv(t)
	const srQuery = "ServiceRequest?identifier=https://riverbend.example.org/referrals|RB-2026-0042"

	t.Run("only a partner posts a referral", func(t *testing.T) {
		r := e.do(t, http.MethodPost, "/fhir", e.ehr, example(t, "inbound-referral.json", ""))
		wantStatus(t, "ehr client", r, http.StatusForbidden)
		// Another partner cannot post in Riverbend's name.
		r = e.do(t, http.MethodPost, "/fhir", e.other, example(t, "inbound-referral.json", ""))
		wantStatus(t, "another partner", r, http.StatusUnprocessableEntity, "Bundle.entry[0].resource.requester.reference")
	})

	var taskID string
	t.Run("create", func(t *testing.T) {
		id, b := e.postReferral(t, example(t, "inbound-referral.json", ""), http.StatusCreated)
		taskID = id
		for i, x := range b["entry"].([]any) {
			resp := x.(map[string]any)["response"].(map[string]any)
			if resp["status"] != "201 Created" || resp["etag"] != `W/"1"` || !strings.HasSuffix(resp["location"].(string), "/_history/1") {
				t.Errorf("entry %d: %v", i, resp)
			}
		}
		task, etag := e.task(t, taskID)
		if etag != `W/"1"` || task["status"] != "requested" {
			t.Errorf("Task %s %v", etag, task["status"])
		}
		bs := task["businessStatus"].(map[string]any)["coding"].([]any)[0].(map[string]any)
		if bs["code"] != "2.0" {
			t.Errorf("businessStatus %v", bs)
		}
		if !strings.Contains(mustJSON(task["input"]), `"code":"match-none"`) {
			t.Errorf("the patient match is not shown: %v", task["input"])
		}
		if n := e.total(t, e.ehr, srQuery); n != 1 {
			t.Errorf("%d ServiceRequests", n)
		}
		if n := e.total(t, e.ehr, "Provenance?agent=Organization/"+orgID(synth.OrgPartnerRiverbend)); n != 1 {
			t.Errorf("%d Provenances with the partner as agent", n)
		}
	})

	t.Run("re-send writes nothing", func(t *testing.T) {
		id, b := e.postReferral(t, example(t, "inbound-referral.json", ""), http.StatusOK)
		if id != taskID {
			t.Errorf("re-send answered Task %s, want %s", id, taskID)
		}
		resp := b["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)
		if resp["status"] != "200 OK" {
			t.Errorf("re-send: %v", resp)
		}
		if n := e.total(t, e.ehr, srQuery); n != 1 {
			t.Errorf("%d ServiceRequests after a re-send", n)
		}
		if r := e.do(t, http.MethodGet, "/fhir/Task/"+taskID+"/_history", e.ehr, nil); !strings.Contains(string(r.body), `"total":1`) {
			t.Errorf("history after a re-send: %s", r.body)
		}
	})

	t.Run("bad Bundle stores nothing", func(t *testing.T) {
		before := e.total(t, e.ehr, "Task?_id:not=x")
		r := e.do(t, http.MethodPost, "/fhir", e.partner, example(t, "bad-referral.json", ""))
		wantStatus(t, "bad", r, http.StatusUnprocessableEntity,
			"Bundle.entry[0].resource.status", "Bundle.entry[1].resource.identifier[0]",
			"Bundle.entry[3].resource.subject.reference")
		if after := e.total(t, e.ehr, "Task?_id:not=x"); after != before {
			t.Errorf("Tasks %d -> %d", before, after)
		}
		r = e.do(t, http.MethodPost, "/fhir", e.partner, []byte(`{"resourceType":"Bundle","type":"batch","entry":[]}`))
		wantStatus(t, "batch", r, http.StatusBadRequest, "Bundle.type")
	})

	t.Run("accept, work, complete", func(t *testing.T) {
		wantStatus(t, "no If-Match", e.move(t, e.ehr, taskID, "", "received", nil), http.StatusPreconditionRequired)
		wantStatus(t, "received", e.move(t, e.ehr, taskID, `W/"1"`, "received", nil), http.StatusOK)
		wantStatus(t, "stale", e.move(t, e.ehr, taskID, `W/"1"`, "accepted", nil), http.StatusPreconditionFailed)
		wantStatus(t, "requester accepting", e.move(t, e.partner, taskID, `W/"2"`, "accepted", nil), http.StatusConflict, "only the owner")
		wantStatus(t, "skip to completed", e.move(t, e.ehr, taskID, `W/"2"`, "completed", nil), http.StatusConflict, "allowed: accepted, rejected")
		wantStatus(t, "not a referral status", e.move(t, e.ehr, taskID, `W/"2"`, "on-hold", nil), http.StatusUnprocessableEntity)
		wantStatus(t, "fixed element", e.move(t, e.ehr, taskID, `W/"2"`, "accepted",
			map[string]any{"owner": map[string]any{"reference": "Organization/" + orgID(synth.OrgPartnerNorthgate)}}),
			http.StatusUnprocessableEntity, "Task.owner")
		wantStatus(t, "accepted", e.move(t, e.ehr, taskID, `W/"2"`, "accepted", nil), http.StatusOK, `"code":"3.0"`)
		wantStatus(t, "cancel after acceptance", e.move(t, e.partner, taskID, `W/"3"`, "cancelled", nil), http.StatusConflict)
		wantStatus(t, "in-progress", e.move(t, e.ehr, taskID, `W/"3"`, "in-progress", nil), http.StatusOK)
		wantStatus(t, "complete without output", e.move(t, e.ehr, taskID, `W/"4"`, "completed", nil), http.StatusUnprocessableEntity, "output")
		output := []any{map[string]any{"type": map[string]any{"text": "consult note"},
			"valueReference": map[string]any{"reference": "Organization/" + orgID(synth.OrgClinic)}}}
		r := e.move(t, e.ehr, taskID, `W/"4"`, "completed", map[string]any{"output": output})
		wantStatus(t, "completed", r, http.StatusOK, `"code":"7.0"`)
		if r.header.Get("ETag") != `W/"5"` {
			t.Errorf("ETag %q", r.header.Get("ETag"))
		}
		h := e.do(t, http.MethodGet, "/fhir/Task/"+taskID+"/_history", e.ehr, nil)
		if !strings.Contains(string(h.body), `"total":5`) {
			t.Errorf("history: %.300s", h.body)
		}
		if n := e.total(t, e.ehr, "Task?status=completed&_id="+taskID); n != 1 {
			t.Errorf("search by the new status: %d", n)
		}
	})

	t.Run("reject needs a reason; the requester cancels", func(t *testing.T) {
		rej, _ := e.postReferral(t, example(t, "inbound-referral.json", "RB-2026-0043"), http.StatusCreated)
		wantStatus(t, "received", e.move(t, e.ehr, rej, `W/"1"`, "received", nil), http.StatusOK)
		wantStatus(t, "reject without reason", e.move(t, e.ehr, rej, `W/"2"`, "rejected", nil), http.StatusUnprocessableEntity, "statusReason")
		wantStatus(t, "rejected", e.move(t, e.ehr, rej, `W/"2"`, "rejected",
			map[string]any{"statusReason": map[string]any{"text": "outside the clinic's criteria"}}), http.StatusOK, `"code":"4.0"`)
		can, _ := e.postReferral(t, example(t, "inbound-referral.json", "RB-2026-0044"), http.StatusCreated)
		wantStatus(t, "owner cancelling", e.move(t, e.ehr, can, `W/"1"`, "cancelled", nil), http.StatusConflict, "only the requester")
		wantStatus(t, "cancelled", e.move(t, e.partner, can, `W/"1"`, "cancelled", nil), http.StatusOK, `"code":"6.0"`)
		wantStatus(t, "another partner", e.move(t, e.other, can, `W/"2"`, "requested", nil), http.StatusForbidden)
	})

	t.Run("JSON Patch", func(t *testing.T) {
		id, _ := e.postReferral(t, example(t, "inbound-referral.json", "RB-2026-0046"), http.StatusCreated)
		patch := func(ifMatch, ops string) edgeAnswer {
			req, _ := http.NewRequest(http.MethodPatch, e.base+"/fhir/Task/"+id, strings.NewReader(ops))
			req.Header.Set("Authorization", "Bearer "+e.ehr)
			req.Header.Set("Content-Type", "application/json-patch+json")
			req.Header.Set("If-Match", ifMatch)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return edgeAnswer{resp.StatusCode, resp.Header, b}
		}
		wantStatus(t, "patch received", patch(`W/"1"`, `[{"op":"test","path":"/status","value":"requested"},{"op":"replace","path":"/status","value":"received"}]`),
			http.StatusOK, `"status":"received"`)
		wantStatus(t, "patch stale", patch(`W/"1"`, `[{"op":"replace","path":"/status","value":"accepted"}]`), http.StatusPreconditionFailed)
		wantStatus(t, "patch test fails", patch(`W/"2"`, `[{"op":"test","path":"/status","value":"requested"}]`), http.StatusConflict)
		wantStatus(t, "patch illegal move", patch(`W/"2"`, `[{"op":"replace","path":"/status","value":"completed"}]`), http.StatusConflict, "allowed: accepted, rejected")
		wantStatus(t, "patch reject", patch(`W/"2"`, `[{"op":"replace","path":"/status","value":"rejected"},{"op":"add","path":"/statusReason","value":{"text":"no capacity"}}]`),
			http.StatusOK, `"code":"4.0"`)
	})

	t.Run("If-Match race", func(t *testing.T) {
		id, _ := e.postReferral(t, example(t, "inbound-referral.json", "RB-2026-0045"), http.StatusCreated)
		cur, _ := e.task(t, id)
		cur["status"] = "received"
		body, _ := json.Marshal(cur)
		var wg sync.WaitGroup
		statuses := make([]int, 6)
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i] = e.do(t, http.MethodPut, "/fhir/Task/"+id, e.ehr, body, "If-Match", `W/"1"`).status
			}()
		}
		wg.Wait()
		won := 0
		for _, s := range statuses {
			switch s {
			case http.StatusOK:
				won++
			case http.StatusPreconditionFailed:
			default:
				t.Errorf("status %d", s)
			}
		}
		if won != 1 {
			t.Errorf("%d updates won: %v", won, statuses)
		}
	})
}

// TestReferralPatientMatch checks the documented matching rule: a
// referred patient is matched by identifier, else by family name, first
// given name, birth date and gender; matched or not it stays its own
// resource, tagged as referred, and the Task shows the basis.
func TestReferralPatientMatch(t *testing.T) {
	e := newReferralEnv(t)
	r := e.do(t, http.MethodGet, "/fhir/Patient?_count=1", e.ehr, nil)
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	demo := r.json(t)["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
	demoID := demo["id"].(string)
	referred := func(t *testing.T, value string, edit func(p map[string]any)) (map[string]any, map[string]any) {
		t.Helper()
		var b map[string]any
		if err := json.Unmarshal(example(t, "inbound-referral.json", value), &b); err != nil {
			t.Fatal(err)
		}
		p := b["entry"].([]any)[2].(map[string]any)["resource"].(map[string]any)
		edit(p)
		body, _ := json.Marshal(b)
		id, _ := e.postReferral(t, body, http.StatusCreated)
		task, _ := e.task(t, id)
		pid := strings.TrimPrefix(task["for"].(map[string]any)["reference"].(string), "Patient/")
		pr := e.do(t, http.MethodGet, "/fhir/Patient/"+pid, e.ehr, nil)
		if pr.status != http.StatusOK {
			t.Fatalf("referred patient: %d %s", pr.status, pr.body)
		}
		return task, pr.json(t)
	}
	t.Run("by identifier", func(t *testing.T) {
		task, p := referred(t, "RB-M-1", func(p map[string]any) { p["identifier"] = demo["identifier"] })
		in := mustJSON(task["input"])
		if !strings.Contains(in, `"code":"match-identifier"`) || !strings.Contains(in, `"Patient/`+demoID+`"`) {
			t.Errorf("Task.input %s", in)
		}
		if p["id"] == demoID || !strings.Contains(mustJSON(p["link"]), `"Patient/`+demoID+`"`) || !strings.Contains(mustJSON(p["meta"]), "referred-patient") {
			t.Errorf("referred patient %s", mustJSON(p))
		}
	})
	t.Run("by demographics", func(t *testing.T) {
		task, _ := referred(t, "RB-M-2", func(p map[string]any) {
			for _, k := range []string{"name", "birthDate", "gender"} {
				p[k] = demo[k]
			}
		})
		if in := mustJSON(task["input"]); !strings.Contains(in, `"code":"match-demographics"`) || !strings.Contains(in, demoID) {
			t.Errorf("Task.input %s", in)
		}
	})
	t.Run("a second referral of a referred patient is no match", func(t *testing.T) {
		referred(t, "RB-M-3", func(map[string]any) {})
		// The same person again: the first referral's Patient is a
		// referred one, not the clinic's, so nothing matches.
		task, p := referred(t, "RB-M-4", func(map[string]any) {})
		if in := mustJSON(task["input"]); !strings.Contains(in, `"code":"match-none"`) || p["link"] != nil {
			t.Errorf("Task.input %s, link %v", in, p["link"])
		}
	})
}

// TestReferralWrittenFHIRIsValid checks that what the write path stores
// and answers passes the gateway's validator, that every change wrote an
// AuditEvent, and that the CapabilityStatement states the write path.
func TestReferralWrittenFHIRIsValid(t *testing.T) {
	e := newReferralEnv(t)
	id, resp := e.postReferral(t, example(t, "inbound-referral.json", ""), http.StatusCreated)
	wantStatus(t, "received", e.move(t, e.ehr, id, `W/"1"`, "received", nil), http.StatusOK)
	body, _ := json.Marshal(resp)
	if issues := conformance.Validate(body); len(issues) > 0 {
		t.Errorf("transaction-response: %v", issues)
	}
	for _, q := range []string{"Task?_id=" + id, "ServiceRequest?_count=50", "Provenance?agent=Organization/" + orgID(synth.OrgPartnerRiverbend),
		"Patient?_count=5&_sort=-_lastUpdated", "Condition?_count=5&_sort=-_lastUpdated", "Observation?_count=5&_sort=-_lastUpdated"} {
		r := e.do(t, http.MethodGet, "/fhir/"+q, e.ehr, nil)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", q, r.status, r.body)
		}
		if issues := conformance.Validate(r.body); len(issues) > 0 {
			t.Errorf("%s: %v", q, issues)
		}
	}
	awaitAudit(t, e.g, map[string]func(store.AuditRecord) bool{
		"the create": func(r store.AuditRecord) bool {
			return r.Interaction == "create" && r.Type == "Task" && r.ResourceID == id && r.Status == http.StatusCreated
		},
		"the update": func(r store.AuditRecord) bool {
			return r.Interaction == "update" && r.Type == "Task" && r.ResourceID == id && r.Status == http.StatusOK
		},
	})
	r := e.do(t, http.MethodGet, "/fhir/metadata", "", nil)
	if !strings.Contains(string(r.body), `"interaction":[{"code":"transaction"`) || !strings.Contains(string(r.body), `{"code":"update"`) ||
		!strings.Contains(string(r.body), "only while the patient's Consent permits the partner") {
		t.Errorf("the CapabilityStatement does not state the write path: %.500s", r.body)
	}
}

// TestReferralOutbound sends a referral from the clinic (a clinic record of
// kind referral) and has the partner find it by polling and move it as
// the Task's owner; sending the record again updates the ServiceRequest
// and leaves the Task as the partner left it.
func TestReferralOutbound(t *testing.T) {
	e := newReferralEnv(t)
	ctx := context.Background()
	rec := func(note string) []json.RawMessage {
		return []json.RawMessage{json.RawMessage(`{"kind":"referral","id":"ref-test-1","patientId":"pat-000001",` +
			`"partnerId":"` + synth.OrgPartnerRiverbend + `","reason":"F33.2","service":"Psychotherapy after ketamine induction",` +
			`"note":"` + note + `","authoredOn":"2026-12-01T09:00:00Z"}`)}
	}
	if _, sum, err := e.g.Ingester().Ingest(ctx, rec("first")); err != nil || sum.Rejected > 0 || sum.Created != 1 {
		t.Fatalf("ingest: %v %+v", err, sum)
	}
	taskID := mapping.ResourceID(clinic.KindReferral, "ref-test-1", "Task")
	poll := "Task?owner=Organization/" + orgID(synth.OrgPartnerRiverbend) + "&status=requested&_id=" + taskID
	if n := e.total(t, e.partner, poll); n != 1 {
		t.Fatalf("the partner's poll finds %d", n)
	}
	if n := e.total(t, e.other, "Task?owner=Organization/"+orgID(synth.OrgPartnerNorthgate)+"&_id="+taskID); n != 0 {
		t.Errorf("another partner's poll finds %d", n)
	}
	wantStatus(t, "clinic accepting its own referral", e.move(t, e.ehr, taskID, `W/"1"`, "received", nil), http.StatusConflict, "only the owner")
	wantStatus(t, "partner received", e.move(t, e.partner, taskID, `W/"1"`, "received", nil), http.StatusOK)
	wantStatus(t, "partner accepted", e.move(t, e.partner, taskID, `W/"2"`, "accepted", nil), http.StatusOK, `"code":"3.0"`)
	if n := e.total(t, e.partner, poll); n != 0 {
		t.Errorf("the accepted referral is still requested: %d", n)
	}
	// The clinic sends the record again, changed.
	if _, sum, err := e.g.Ingester().Ingest(ctx, rec("second")); err != nil || sum.Updated != 1 {
		t.Fatalf("re-ingest: %v %+v", err, sum)
	}
	task, etag := e.task(t, taskID)
	if task["status"] != "accepted" || etag != `W/"3"` {
		t.Errorf("after the re-send the Task is %v at %s, want accepted at 3", task["status"], etag)
	}
	srID := mapping.ResourceID(clinic.KindReferral, "ref-test-1")
	r := e.do(t, http.MethodGet, "/fhir/ServiceRequest/"+srID, e.ehr, nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"second"`) || r.header.Get("ETag") != `W/"2"` {
		t.Errorf("ServiceRequest after the re-send: %d %s %.300s", r.status, r.header.Get("ETag"), r.body)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
