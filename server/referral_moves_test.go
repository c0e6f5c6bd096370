package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/fhir/referral"
	"github.com/ketabridge/ketabridge/mapping/synth"
)

// TestReferralEveryIllegalMove sends, over HTTP with real tokens, every
// move the state machine refuses: from each status a referral can reach,
// to each referral status and a status outside it, as the owner (the
// clinic's EHR client) and as the requester (the partner). Each must be
// answered with the machine's status (409, or 422 for a status outside
// it), name the moves allowed instead, and write nothing
// (docs/design/security.md RFL-2; referral.Decide's own matrix test says
// which moves those are).
func TestReferralEveryIllegalMove(t *testing.T) {
	e := newReferralEnv(t)
	output := []any{map[string]any{"type": map[string]any{"text": "consult note"},
		"valueReference": map[string]any{"reference": "Organization/" + orgID(synth.OrgClinic)}}}
	reason := map[string]any{"text": "outside the clinic's criteria"}
	// The path from requested to each status, as (status, actor) steps.
	paths := map[referral.Status][]referral.Status{
		referral.Requested:  nil,
		referral.Received:   {referral.Received},
		referral.Accepted:   {referral.Received, referral.Accepted},
		referral.InProgress: {referral.Received, referral.Accepted, referral.InProgress},
		referral.Completed:  {referral.Received, referral.Accepted, referral.InProgress, referral.Completed},
		referral.Rejected:   {referral.Received, referral.Rejected},
		referral.Cancelled:  {referral.Cancelled},
	}
	tokens := map[referral.Actor]string{referral.Owner: e.ehr, referral.Requester: e.partner}
	targets := append(slices.Clone(referral.Statuses), "on-hold")
	tried := 0
	for n, from := range referral.Statuses {
		id, _ := e.postReferral(t, example(t, "inbound-referral.json", fmt.Sprintf("RB-MOVES-%d", n)), http.StatusCreated)
		version := 1
		for _, step := range paths[from] {
			by := e.ehr
			if step == referral.Cancelled {
				by = e.partner
			}
			r := e.move(t, by, id, fmt.Sprintf(`W/"%d"`, version), string(step), map[string]any{"statusReason": reason, "output": output})
			wantStatus(t, "to "+string(step), r, http.StatusOK)
			version++
		}
		for _, actor := range []referral.Actor{referral.Owner, referral.Requester} {
			for _, to := range targets {
				v := referral.Decide(referral.Move{From: from, To: to, By: actor, HasStatusReason: true, HasOutput: true})
				if v.Code == referral.Allowed {
					continue
				}
				tried++
				what := fmt.Sprintf("%s: %s -> %s", actor, from, to)
				r := e.move(t, tokens[actor], id, fmt.Sprintf(`W/"%d"`, version), string(to), map[string]any{"statusReason": reason, "output": output})
				if r.status != v.Code {
					t.Errorf("%s: %d, want %d: %s", what, r.status, v.Code, r.body)
					continue
				}
				for _, next := range v.Next {
					if !strings.Contains(string(r.body), string(next)) {
						t.Errorf("%s: the answer does not name the allowed move to %s: %s", what, next, r.body)
					}
				}
				if !strings.Contains(string(r.body), "OperationOutcome") {
					t.Errorf("%s: no OperationOutcome: %s", what, r.body)
				}
			}
		}
		if _, etag := e.task(t, id); etag != fmt.Sprintf(`W/"%d"`, version) {
			t.Errorf("from %s: a refused move wrote a version (%s)", from, etag)
		}
	}
	if tried < 80 {
		t.Errorf("only %d illegal moves tried", tried)
	}
}

// TestReferralPollAcrossReplicas polls Task?_lastUpdated=ge{cursor} at
// one replica while referrals are created and moved at both at once, as
// docs/referrals.md tells a partner to: the cursor is the largest
// lastUpdated seen, versions already held are dropped. After the writers
// stop, what the poller holds is every Task at its final version: no
// change fell behind the cursor (the store stamps versions in commit
// order, under one lock, across replicas).
func TestReferralPollAcrossReplicas(t *testing.T) {
	eA, eB := replicaPair(t, func(r json.RawMessage) bool { return strings.Contains(string(r), `"kind":"organization"`) })
	requester := "Organization/" + orgID(synth.OrgPartnerRiverbend)
	// The poller is a client of its own (its own rate-limit bucket).
	poller := eB.token(t, "poller", "ehr", orgID(synth.OrgClinic), "system/Task.rs")
	held := map[string]string{} // Task id -> versionId
	cursor := "2000-01-01T00:00:00Z"
	poll := func() {
		t.Helper()
		r := eB.do(t, http.MethodGet, "/fhir/Task?requester="+requester+"&_lastUpdated=ge"+cursor+"&_sort=_lastUpdated&_count=500", poller, nil)
		if r.status != http.StatusOK {
			t.Fatalf("poll: %d %s", r.status, r.body)
		}
		var b struct {
			Entry []struct {
				Resource struct {
					ID   string                                  `json:"id"`
					Meta struct{ VersionID, LastUpdated string } `json:"meta"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Fatal(err)
		}
		for _, en := range b.Entry {
			res := en.Resource
			held[res.ID] = res.Meta.VersionID
			lu, err := time.Parse(time.RFC3339Nano, res.Meta.LastUpdated)
			if err != nil {
				t.Fatal(err)
			}
			c, _ := time.Parse(time.RFC3339Nano, cursor)
			if lu.After(c) {
				cursor = lu.UTC().Format("2006-01-02T15:04:05.000Z")
			}
		}
	}
	const writers, each = 4, 5
	var wg sync.WaitGroup
	done := make(chan struct{})
	// Each write wakes the poller, so polls interleave with the writes
	// without spinning.
	wrote := make(chan struct{}, writers*each*2)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := eA
				if (w+i)%2 == 1 {
					e = eB
				}
				id, _ := e.postReferral(t, example(t, "inbound-referral.json", fmt.Sprintf("RB-POLL-%d-%d", w, i)), http.StatusCreated)
				wrote <- struct{}{}
				if r := e.move(t, e.ehr, id, `W/"1"`, "received", nil); r.status != http.StatusOK {
					t.Errorf("received: %d %s", r.status, r.body)
				}
				wrote <- struct{}{}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	polls := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-wrote:
			poll()
			polls++
		}
	}
	poll()
	final := map[string]string{}
	r := eB.do(t, http.MethodGet, "/fhir/Task?requester="+requester+"&_count=500", poller, nil)
	var b struct {
		Entry []struct {
			Resource struct {
				ID   string                     `json:"id"`
				Meta struct{ VersionID string } `json:"meta"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatal(err)
	}
	for _, en := range b.Entry {
		final[en.Resource.ID] = en.Resource.Meta.VersionID
	}
	if len(final) != writers*each {
		t.Fatalf("%d Tasks, want %d", len(final), writers*each)
	}
	for id, v := range final {
		if held[id] != v {
			t.Errorf("Task %s: the poller holds version %q, the store %q: a change fell behind the cursor", id, held[id], v)
		}
	}
	t.Logf("%d polls while %d referrals were written and moved at two replicas", polls, writers*each)
}
