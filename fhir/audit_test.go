package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/conformance"
	"github.com/ketabridge/ketabridge/store"
)

// eventLog is a fake Auditor collecting Events.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) Record(_ context.Context, ev Event) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

func (l *eventLog) take() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.events
	l.events = nil
	return out
}

func newAuditEnv(t *testing.T, callers testCallers) (*testEnv, *eventLog) {
	t.Helper()
	events := &eventLog{}
	env := newEnvWith(t, Options{Verifier: callers, Auditor: events,
		RateLimit: &RateLimit{Limiter: throttleAll{}, Rate: 1, Burst: 1}})
	return env, events
}

// throttleAll refuses the requests of client "greedy" and serves the others.
type throttleAll struct{}

func (throttleAll) Take(_ context.Context, key string, _ float64, _ int) (bool, time.Duration, error) {
	return key != clientKey("greedy"), time.Second, nil
}

func TestAuditEvents(t *testing.T) {
	who := func(client, subject, fhirUser, scope, patient string) *auth.AccessInfo {
		info := caller(scope, patient)
		info.ClientID, info.Subject, info.FHIRUser = client, subject, fhirUser
		return info
	}
	callers := testCallers{
		"clinician":  who("app-1", "alice", "Practitioner/dr1", "user/*.rs", ""),
		"patientApp": who("app-2", "jane", "Patient/p1", "patient/*.rs", "p1"),
		"backend":    who("ehr-1", "ehr-1", "", "system/*.rs", ""),
		"writer":     who("ehr-1", "ehr-1", "", "system/*.cruds", ""),
		"greedy":     who("greedy", "greedy", "", "system/*.rs", ""),
	}

	cases := []struct {
		name    string
		token   string // "": none
		method  string
		path    string
		status  int
		want    *Event // nil: no Event
		outcome string
	}{
		{name: "read patient", token: "clinician", path: "/fhir/Patient/p1", status: 200, outcome: "0",
			want: &Event{Interaction: auth.InteractionRead, Type: "Patient", ID: "p1", Patients: []string{"p1"},
				ClientID: "app-1", FHIRUser: "Practitioner/dr1", Subject: "alice"}},
		{name: "read observation", token: "patientApp", path: "/fhir/Observation/o01", status: 200, outcome: "0",
			want: &Event{Interaction: auth.InteractionRead, Type: "Observation", ID: "o01", Patients: []string{"p1"},
				ClientID: "app-2", FHIRUser: "Patient/p1", Subject: "jane"}},
		{name: "vread", token: "backend", path: "/fhir/Observation/o02/_history/1", status: 200, outcome: "0",
			want: &Event{Interaction: auth.InteractionVRead, Type: "Observation", ID: "o02", Version: "1", Patients: []string{"p1"},
				ClientID: "ehr-1"}},
		{name: "history", token: "backend", path: "/fhir/Patient/p1/_history", status: 200, outcome: "0",
			want: &Event{Interaction: auth.InteractionHistoryInstance, Type: "Patient", ID: "p1", Patients: []string{"p1"}, ClientID: "ehr-1"}},
		{name: "search one patient", token: "patientApp", path: "/fhir/Observation?patient=p1", status: 200, outcome: "0",
			want: &Event{Interaction: auth.InteractionSearch, Type: "Observation", Patients: []string{"p1"},
				ClientID: "app-2", FHIRUser: "Patient/p1", Subject: "jane"}},
		{name: "search many patients", token: "backend", path: "/fhir/Observation?_count=100", status: 200, outcome: "0",
			want: &Event{Interaction: auth.InteractionSearch, Type: "Observation", Patients: []string{"p1", "p2"}, ClientID: "ehr-1"}},
		{name: "search with include", token: "backend", path: "/fhir/Encounter?_include=Encounter:subject", status: 200, outcome: "0",
			want: &Event{Interaction: auth.InteractionSearch, Type: "Encounter", Patients: []string{"p1"}, ClientID: "ehr-1"}},
		{name: "count only names the decision's patients", token: "patientApp", path: "/fhir/Observation?_summary=count",
			status: 200, outcome: "0",
			want: &Event{Interaction: auth.InteractionSearch, Type: "Observation", Patients: []string{"p1"},
				ClientID: "app-2", FHIRUser: "Patient/p1", Subject: "jane"}},
		{name: "denied read of another patient's resource", token: "patientApp", path: "/fhir/Observation/x1",
			status: 403, outcome: "4",
			want: &Event{Interaction: auth.InteractionRead, Type: "Observation", ID: "x1", Patients: []string{"p2"},
				ClientID: "app-2", FHIRUser: "Patient/p1", Subject: "jane"}},
		{name: "denied without token", path: "/fhir/Observation/o01", status: 401, outcome: "4",
			want: &Event{Interaction: auth.InteractionRead, Type: "Observation", ID: "o01"}},
		{name: "denied everything of another patient", token: "patientApp", path: "/fhir/Patient/p2/$everything",
			status: 403, outcome: "4",
			want: &Event{Interaction: auth.InteractionEverything, Type: "Patient", ID: "p2", Patients: []string{"p2"},
				ClientID: "app-2", FHIRUser: "Patient/p1", Subject: "jane"}},
		{name: "everything", token: "clinician", path: "/fhir/Patient/p1/$everything", status: 200, outcome: "0",
			want: &Event{Interaction: auth.InteractionEverything, Type: "Patient", ID: "p1", Patients: []string{"p1"},
				ClientID: "app-1", FHIRUser: "Practitioner/dr1", Subject: "alice"}},
		{name: "not found in a compartment type", token: "backend", path: "/fhir/Observation/nope", status: 404, outcome: "4",
			want: &Event{Interaction: auth.InteractionRead, Type: "Observation", ID: "nope", ClientID: "ehr-1"}},
		{name: "denied practitioner read", path: "/fhir/Practitioner/dr1", status: 401, outcome: "4",
			want: &Event{Interaction: auth.InteractionRead, Type: "Practitioner", ID: "dr1"}},
		{name: "denied write", token: "backend", method: http.MethodPost, path: "/fhir/Observation", status: 403, outcome: "4",
			want: &Event{Interaction: auth.InteractionCreate, Type: "Observation", ClientID: "ehr-1"}},
		{name: "metadata is not audited", path: "/fhir/metadata", status: 200},
		{name: "practitioner read is not patient data", token: "backend", path: "/fhir/Practitioner/dr1", status: 200},
		{name: "refused write touches nothing", token: "writer", method: http.MethodPost, path: "/fhir/Observation", status: 405},
		{name: "bad parameter before the decision", token: "backend", path: "/fhir/Observation?bogus=1", status: 400},
		{name: "unauthenticated bad parameter is a denied search", path: "/fhir/Observation?bogus=1", status: 401, outcome: "4",
			want: &Event{Interaction: auth.InteractionSearch, Type: "Observation"}},
		{name: "invalid token", token: "forged", path: "/fhir/Patient/p1", status: 401, outcome: "4",
			want: &Event{Interaction: auth.InteractionRead, Type: "Patient", ID: "p1", Patients: []string{"p1"}}},
		{name: "throttled", token: "greedy", path: "/fhir/Observation/o01/_history", status: 429, outcome: "4",
			want: &Event{Interaction: auth.InteractionHistoryInstance, Type: "Observation", ID: "o01", ClientID: "greedy"}},
		{name: "unauthenticated unknown type is not patient data", path: "/fhir/Spaceship/s1", status: 401},
		{name: "unauthenticated write", method: http.MethodDelete, path: "/fhir/Observation/o01", status: 401, outcome: "4",
			want: &Event{Interaction: auth.InteractionDelete, Type: "Observation", ID: "o01"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env, events := newAuditEnv(t, callers)
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			w := env.doAs(tc.token, method, tc.path, "", "X-Request-Id", "req-1")
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			got := events.take()
			if tc.want == nil {
				if len(got) != 0 {
					t.Fatalf("want no Event, got %+v", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("want 1 Event, got %d: %+v", len(got), got)
			}
			ev := got[0]
			want := *tc.want
			want.Status, want.RequestID, want.Time = tc.status, "req-1", t0.Add(24*time.Hour)
			if want.ClientID != "" {
				want.Purpose = "TREAT" // an EHR client's purpose of use (PRIV-8)
			}
			if ev.Interaction != want.Interaction || ev.Type != want.Type || ev.ID != want.ID || ev.Version != want.Version ||
				!slices.Equal(ev.Patients, want.Patients) || ev.Status != want.Status || ev.ClientID != want.ClientID ||
				ev.FHIRUser != want.FHIRUser || ev.Subject != want.Subject || ev.RequestID != want.RequestID ||
				!ev.Time.Equal(want.Time) || ev.Purpose != want.Purpose {
				t.Fatalf("Event =\n%+v\nwant\n%+v", ev, want)
			}
			body, err := MarshalAuditEvent(ev, "4f0c2a57-6b1e-4c1a-9d55-3a1f0e7b2c11")
			if err != nil {
				t.Fatal(err)
			}
			if issues := conformance.Validate(body); len(issues) != 0 {
				t.Fatalf("AuditEvent invalid: %+v\n%s", issues, body)
			}
			m := parseFHIR(t, body)
			if m["resourceType"] != "AuditEvent" || m["outcome"] != tc.outcome {
				t.Errorf("resourceType/outcome = %v/%v, want AuditEvent/%s", m["resourceType"], m["outcome"], tc.outcome)
			}
			writeSample(t, "auditevent-"+sampleName(tc.name)+".json", body)
		})
	}
}

func sampleName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == ' ' || c == '\'' {
			b[i] = '-'
		}
	}
	return string(b)
}

func TestAuditEventShape(t *testing.T) {
	base := Event{
		Time: time.Date(2025, 2, 3, 4, 5, 6, 7_000_000, time.FixedZone("X", 3600)), RequestID: "r1",
		Interaction: auth.InteractionSearch, Type: "Observation", Status: 200,
	}
	type check struct {
		path []any
		want any
	}
	cases := []struct {
		name   string
		edit   func(*Event)
		checks []check
		absent [][]any
	}{
		{name: "backend client is the requestor", edit: func(e *Event) { e.ClientID = "ehr-1"; e.Patients = []string{"p1", "p2"} },
			checks: []check{
				{[]any{"type", "system"}, systemAuditEventType}, {[]any{"type", "code"}, "rest"},
				{[]any{"subtype", 0, "system"}, systemRestful}, {[]any{"subtype", 0, "code"}, "search-type"},
				{[]any{"action"}, "E"}, {[]any{"outcome"}, "0"}, {[]any{"recorded"}, "2025-02-03T03:05:06.007Z"},
				{[]any{"agent", 0, "who", "identifier", "value"}, "ehr-1"}, {[]any{"agent", 0, "requestor"}, true},
				{[]any{"source", "observer", "display"}, "KetaBridge"},
				{[]any{"source", "type", 0, "system"}, systemSourceType}, {[]any{"source", "type", 0, "code"}, "4"},
				{[]any{"entity", 0, "type", "code"}, "Observation"}, {[]any{"entity", 0, "role", "code"}, "24"},
				{[]any{"entity", 0, "detail", 0, "valueString"}, "r1"},
				{[]any{"entity", 1, "what", "reference"}, "Patient/p1"}, {[]any{"entity", 1, "role", "code"}, "1"},
				{[]any{"entity", 1, "role", "system"}, systemObjectRole},
				{[]any{"entity", 2, "what", "reference"}, "Patient/p2"},
			},
			absent: [][]any{{"agent", 1}, {"entity", 0, "what"}, {"entity", 0, "query"}, {"purposeOfEvent"}, {"entity", 3}}},
		{name: "user agent is the requestor", edit: func(e *Event) {
			e.Interaction, e.ID, e.Version, e.Status = auth.InteractionVRead, "o1", "3", 403
			e.ClientID, e.FHIRUser, e.Subject, e.Purpose = "app-1", "Practitioner/dr1", "alice", "TREAT"
		},
			checks: []check{
				{[]any{"subtype", 0, "code"}, "vread"}, {[]any{"action"}, "R"}, {[]any{"outcome"}, "4"},
				{[]any{"outcomeDesc"}, "HTTP 403"},
				{[]any{"agent", 0, "who", "identifier", "value"}, "app-1"}, {[]any{"agent", 0, "requestor"}, false},
				{[]any{"agent", 1, "who", "reference"}, "Practitioner/dr1"}, {[]any{"agent", 1, "altId"}, "alice"},
				{[]any{"agent", 1, "requestor"}, true},
				{[]any{"entity", 0, "what", "reference"}, "Observation/o1/_history/3"}, {[]any{"entity", 0, "role", "code"}, "4"},
				{[]any{"purposeOfEvent", 0, "coding", 0, "code"}, "TREAT"},
			},
			absent: [][]any{{"entity", 1}}},
		{name: "anonymous and a server error", edit: func(e *Event) { e.Interaction, e.ID, e.Status = auth.InteractionEverything, "p1", 500 },
			checks: []check{
				{[]any{"subtype", 0, "code"}, "operation"}, {[]any{"action"}, "E"}, {[]any{"outcome"}, "8"},
				{[]any{"agent", 0, "who", "display"}, auditAnonymousDisplay}, {[]any{"agent", 0, "requestor"}, true},
			},
			absent: [][]any{{"agent", 1}}},
		{name: "history", edit: func(e *Event) { e.Interaction, e.ID = auth.InteractionHistoryInstance, "o1" },
			checks: []check{{[]any{"subtype", 0, "code"}, "history-instance"}, {[]any{"action"}, "R"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := base
			tc.edit(&ev)
			body, err := MarshalAuditEvent(ev, "a1")
			if err != nil {
				t.Fatal(err)
			}
			if issues := conformance.Validate(body); len(issues) != 0 {
				t.Fatalf("AuditEvent invalid: %+v\n%s", issues, body)
			}
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.checks {
				if got := get(m, c.path...); got != c.want {
					t.Errorf("%v = %v, want %v", c.path, got, c.want)
				}
			}
			for _, p := range tc.absent {
				if got := get(m, p...); got != nil {
					t.Errorf("%v = %v, want absent", p, got)
				}
			}
			writeSample(t, "auditevent-shape-"+sampleName(tc.name)+".json", body)
		})
	}
}

// TestAuditEventJSONRoundTrip pins that a stored record renders to exactly
// the bytes MarshalAuditEvent gives for the original event narrowed to the
// record's patient, every time, and that they are valid R4.
func TestAuditEventJSONRoundTrip(t *testing.T) {
	local := time.FixedZone("UTC-5", -5*3600)
	at := time.Date(2025, 5, 1, 9, 30, 15, 123456789, local) // sub-ms digits, not UTC
	cases := []struct {
		name string
		ev   Event
	}{
		{"vread by a user, two patients", Event{Time: at, RequestID: "req-1", Interaction: auth.InteractionVRead,
			Type: "Observation", ID: "o1", Version: "3", Patients: []string{"p1", "p2"}, Status: 200,
			ClientID: "app-1", FHIRUser: "Practitioner/dr1", Subject: "alice", Purpose: "TREAT"}},
		{"search by a backend client", Event{Time: at, RequestID: "req-2", Interaction: auth.InteractionSearch,
			Type: "Observation", Patients: []string{"p1"}, Status: 200, ClientID: "ehr-1"}},
		{"anonymous denied read, no patient", Event{Time: at, Interaction: auth.InteractionRead, Type: "Patient",
			ID: "p9", Status: 401}},
		{"user without fhirUser, server error", Event{Time: at, RequestID: "req-3", Interaction: auth.InteractionEverything,
			Type: "Patient", ID: "p1", Patients: []string{"p1"}, Status: 500, Subject: "bob"}},
		{"refused write", Event{Time: at, RequestID: "req-4", Interaction: auth.InteractionUpdate, Type: "Observation",
			ID: "o1", Status: 403, ClientID: "app-1"}},
		{"before 1970 with sub-ms digits", Event{Time: time.Date(1969, 12, 31, 23, 59, 59, 998_500_000, time.UTC),
			Interaction: auth.InteractionRead, Type: "Patient", ID: "p1", Patients: []string{"p1"}, Status: 200}},
	}
	for _, tc := range cases {
		patients := tc.ev.Patients
		if len(patients) == 0 {
			patients = []string{""}
		}
		for i, p := range patients {
			t.Run(tc.name+" "+p, func(t *testing.T) {
				id := "0b5f6f1c-7f1e-4c39-9d0e-3a3c7f6b2f1" + string(rune('0'+i))
				one := tc.ev
				one.Patients = nil
				if p != "" {
					one.Patients = []string{p}
				}
				want, err := MarshalAuditEvent(one, id)
				if err != nil {
					t.Fatal(err)
				}
				rec := tc.ev.AuditRecord(id, p)
				if rec.Recorded.Nanosecond()%int(time.Millisecond) != 0 {
					t.Errorf("Recorded %v keeps sub-millisecond digits", rec.Recorded)
				}
				// As a store returns it: milliseconds, in UTC.
				rec.Recorded = time.UnixMilli(rec.Recorded.UnixMilli()).UTC()
				for range 2 {
					got, err := AuditEventJSON(rec)
					if err != nil {
						t.Fatal(err)
					}
					if string(got) != string(want) {
						t.Fatalf("rendered\n%s\nwant\n%s", got, want)
					}
				}
				if issues := conformance.Validate(want); len(issues) != 0 {
					t.Errorf("invalid AuditEvent: %+v\n%s", issues, want)
				}
			})
		}
	}
}

// TestAuditEventJSONStoredNames: records stored with the interaction names
// used before the access vocabulary moved to auth render as they did.
func TestAuditEventJSONStoredNames(t *testing.T) {
	for _, tc := range []struct{ stored, code string }{
		{"search", "search-type"}, {"history", "history-instance"}, {"search-type", "search-type"},
		{"history-instance", "history-instance"}, {"everything", "operation"}, {"read", "read"},
	} {
		t.Run(tc.stored, func(t *testing.T) {
			body, err := AuditEventJSON(store.AuditRecord{ID: "a1", Recorded: t0, Interaction: tc.stored, Type: "Observation", Status: 200})
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			if got := get(m, "subtype", 0, "code"); got != tc.code {
				t.Errorf("subtype = %v, want %s", got, tc.code)
			}
		})
	}
}

// gatedLog is an Auditor that refuses admission while closed is set
// (docs/design/security.md AUD-ARCH-2).
type gatedLog struct {
	eventLog
	closed bool
}

func (g *gatedLog) Admit() error {
	if g.closed {
		return errors.New("audit store down")
	}
	return nil
}

// TestAuditGateFailsClosed: while the Auditor refuses admission, an audited
// request is answered 503 with an OperationOutcome and no data; once it
// admits again the same request is served and audited.
func TestAuditGateFailsClosed(t *testing.T) {
	gate := &gatedLog{closed: true}
	env := newEnvWith(t, Options{Verifier: testCallers{"backend": caller("system/*.rs", "")}, Auditor: gate})
	w := env.doAs("backend", http.MethodGet, "/fhir/Observation/o01", "")
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "OperationOutcome") ||
		strings.Contains(w.Body.String(), `"resourceType":"Observation"`) {
		t.Fatalf("refused: %d %s, want a 503 OperationOutcome", w.Code, w.Body)
	}
	if got := gate.take(); len(got) != 0 {
		t.Errorf("a refused request was audited as an access: %+v", got)
	}
	gate.closed = false
	w = env.doAs("backend", http.MethodGet, "/fhir/Observation/o01", "")
	if w.Code != http.StatusOK {
		t.Fatalf("admitted: %d %s", w.Code, w.Body)
	}
	if got := gate.take(); len(got) != 1 || got[0].ID != "o01" {
		t.Errorf("events = %+v, want the read of o01", got)
	}
}
