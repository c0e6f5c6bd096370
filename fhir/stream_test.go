package fhir

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/store"
)

// writeRecorder is a ResponseRecorder that remembers the size of every
// Write the handler made.
type writeRecorder struct {
	*httptest.ResponseRecorder
	writes []int
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return w.ResponseRecorder.Write(p)
}

// addObservations stores n observations of patient (ids prefix0000...), each
// about 600 bytes, so that n of them make a Bundle of many chunks.
func addObservations(env *testEnv, patient, prefix string, n int) {
	for i := range n {
		id := fmt.Sprintf("%s%04d", prefix, i)
		env.fs.put("Observation", id, patient, t0, obsBody(id, patient), obsRows(patient)...)
	}
}

// TestBundleStreamedInChunks: a Bundle larger than a chunk leaves the
// handler in writes of about a chunk each, not as one buffer of the whole
// answer (docs/design/security.md PERF-ST-1), and is still one valid
// searchset with every entry.
func TestBundleStreamedInChunks(t *testing.T) {
	env := newEnv(t, allowAll)
	env.fs.put("Patient", "p9", "p9", t0, patientBody("p9", "Nine"))
	addObservations(env, "p9", "big", 450)
	for _, tc := range []struct {
		name, target string
		entries      int
	}{
		{"everything", "/fhir/Patient/p9/$everything?_count=500", 451},
		{"search", "/fhir/Observation?patient=p9&_count=500", 450},
		{"search with _elements", "/fhir/Observation?patient=p9&_count=500&_elements=status", 450},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.target, nil)
			r.Header.Set("Authorization", "Bearer "+defaultToken)
			w := &writeRecorder{ResponseRecorder: httptest.NewRecorder()}
			env.e.ServeHTTP(w, r)
			if w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
				t.Errorf("Content-Type %q", ct)
			}
			size := w.Body.Len()
			m := parseFHIR(t, w.Body.Bytes())
			if n := len(entryIDs(m)); n != tc.entries {
				t.Fatalf("%d entries, want %d", n, tc.entries)
			}
			if size < 3*bundleChunk {
				t.Fatalf("the Bundle is %d bytes: too small to test chunking", size)
			}
			if len(w.writes) < size/(2*bundleChunk) {
				t.Errorf("%d bytes in %d writes %v: not streamed in chunks", size, len(w.writes), w.writes)
			}
			for _, n := range w.writes {
				// A chunk ends after the entry that filled it: at most a
				// chunk and one entry (about 800 bytes here).
				if n > bundleChunk+4096 {
					t.Errorf("a write of %d bytes (chunk %d): the answer was buffered", n, bundleChunk)
				}
			}
		})
	}
}

// TestBundleStreamedHead: HEAD of an answer of many chunks gets the GET's
// status and content type and no body.
func TestBundleStreamedHead(t *testing.T) {
	env := newEnv(t, allowAll)
	env.fs.put("Patient", "p9", "p9", t0, patientBody("p9", "Nine"))
	addObservations(env, "p9", "big", 450)
	w := env.do("HEAD", "/fhir/Patient/p9/$everything", "")
	if w.Code != 200 || w.Body.Len() != 0 || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/fhir+json") {
		t.Errorf("HEAD: status %d, %d body bytes, Content-Type %q", w.Code, w.Body.Len(), w.Header().Get("Content-Type"))
	}
}

// TestEverythingDefaultPageWholeRecord: without _count, $everything answers
// a whole compartment of up to search.MaxCount resources in one page
// (docs/design/security.md PERF-ST-3), not 20 of them.
func TestEverythingDefaultPageWholeRecord(t *testing.T) {
	env := newEnv(t, allowAll)
	w := env.do("GET", "/fhir/Patient/p1/$everything", "")
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	m := parseFHIR(t, w.Body.Bytes())
	ids := entryIDs(m)
	if m["total"] != 27.0 || len(ids) != 27 || ids[0] != "match:Patient/p1" {
		t.Fatalf("total %v, %d entries %v", m["total"], len(ids), ids)
	}
	if next := linkURL(m, "next"); next != "" {
		t.Errorf("next link %q on a page holding the whole compartment", next)
	}
	if self := linkURL(m, "self"); self != testBase+"/Patient/p1/$everything?_count=500&_offset=0" {
		t.Errorf("self = %q", self)
	}
	// An explicit _count still pages.
	m = parseFHIR(t, env.do("GET", "/fhir/Patient/p1/$everything?_count=20", "").Body.Bytes())
	if ids := entryIDs(m); len(ids) != 20 || linkURL(m, "next") == "" {
		t.Errorf("_count=20: %d entries, next %q", len(ids), linkURL(m, "next"))
	}
}

// putBroken stores an Observation of patient whose stored body is not JSON
// (a corrupt row): _elements cannot rewrite it.
func putBroken(env *testEnv, id, patient string) {
	k := store.Key{Type: "Observation", ID: id}
	env.fs.versions[k] = []store.Resource{{Type: "Observation", ID: id, Version: 1, LastUpdated: t0,
		Patient: patient, Body: []byte(`{"resourceType":"Observation","id":` + id)}}
	env.fs.index[k] = obsRows(patient)
}

// TestBundleErrorMidStream: an error while a Bundle is written. Before its
// first chunk is sent the client gets the error's OperationOutcome and
// status; after it, the connection is aborted, so the client's read of the
// body fails instead of ending at a Bundle that looks complete
// (docs/design/security.md PERF-ST-2).
func TestBundleErrorMidStream(t *testing.T) {
	env, events := newAuditEnv(t, allowAll)
	env.token = defaultToken
	env.fs.put("Patient", "p9", "p9", t0, patientBody("p9", "Nine"))
	addObservations(env, "p9", "big", 450)
	putBroken(env, "aa-broken", "p9") // sorts first
	putBroken(env, "zz-broken", "p9") // sorts last, after several chunks

	t.Run("before the first chunk", func(t *testing.T) {
		w := env.do("GET", "/fhir/Observation?patient=p9&_count=1&_elements=status", "")
		outcome(t, w, 500, "exception")
		events.take()
	})

	t.Run("after the first chunk", func(t *testing.T) {
		srv := httptest.NewServer(env.e)
		defer srv.Close()
		req, _ := http.NewRequest("GET", srv.URL+"/fhir/Observation?patient=p9&_count=500&_offset=1&_elements=status", nil)
		req.Header.Set("Authorization", "Bearer "+defaultToken)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		body, err := io.ReadAll(resp.Body)
		if err == nil {
			t.Fatalf("the body of %d bytes read to its end without an error: a truncated Bundle looks complete", len(body))
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("read error %v, want an unexpected EOF", err)
		}
		if len(body) < bundleChunk {
			t.Errorf("only %d bytes arrived before the abort: the error did not come mid-stream", len(body))
		}
		if strings.Contains(string(body), "zz-broken") {
			t.Errorf("the broken resource's bytes were sent")
		}
		srv.Close() // waits for the handler, and so for its audit record

		// What was sent before the abort is disclosed: it is audited.
		evs := events.take()
		if len(evs) != 1 || evs[0].Type != "Observation" || evs[0].Status != 200 ||
			len(evs[0].Patients) != 1 || evs[0].Patients[0] != "p9" {
			t.Errorf("audit events %+v, want one search of p9's Observations", evs)
		}
		// The abort is logged by the error's kind, without content.
		if log := env.log.String(); !strings.Contains(log, "bundle aborted after its first chunk") || strings.Contains(log, "zz-broken") {
			t.Errorf("log: %s", log)
		}
	})
}
