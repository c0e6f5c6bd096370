package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
)

// The search-writes scenario: the search scenario's requests while one more
// connection changes a clinic record of a searched patient writeRate times
// a second through the ingest API, as a clinic's own system does while EHRs
// read. The read cache must drop exactly the answers a write could change
// (docs/design/security.md CACHE-1: the written patient's searches) and keep
// every other patient's, so the hit ratio should stay near the search
// scenario's; a cache that forgot everything on each write would miss on
// almost every request. Each write is checked: the patient's search is read
// just before it (so a stale answer would be in the cache) and again as
// soon as it is acknowledged, and the changed Observation must carry the
// value just written. One stale answer fails the run.
const (
	writeScenario = "search-writes"
	// writeRate is the records changed per second.
	writeRate = 10
	// writePatients is how many of the first patients the writes cycle
	// through (each with one session record whose heart rate they change).
	writePatients = 64
	// writeScope is the write client's scope: the ingest API's, nothing
	// more (the checks read with the scenario's own client, so that they
	// ask for the very answers the scenario's requests cache).
	writeScope = "system/ClinicRecord.write"
)

// writeTarget is one session record the writes change: the heart rate of
// one of its vitals sets, whose Observation is on the first page of the
// patient's search (searchPath), alternating between two values that both
// differ from the synthesised one, so every write changes the record.
type writeTarget struct {
	patient string // FHIR Patient id
	obs     string // the heart rate's Observation id
	values  [2]float64
	records [2][]byte // the record with values[0], values[1]
	n       int       // writes so far
}

// writeStats is what the writer did during the scenario.
type writeStats struct {
	// Writes are the acknowledged writes (outcome "updated"), Stale the
	// reads right after one that did not show it, Failed the writes or
	// checks that failed otherwise (status, transport).
	Writes, Stale, Failed int
	first                 string
	// lag is the sum of the time from a write's acknowledgement to the
	// check's answer.
	lag time.Duration
}

// writeTargets finds, for each of the first writePatients patients, a
// session record of the synthesised file whose heart-rate Observation is
// on the first page of the patient's search, as the gateway answers it
// now (read with hdr).
func writeTargets(ctx context.Context, gr *gatewayRun, file string, patients []string, hdr http.Header) ([]writeTarget, error) {
	want := make(map[string]bool, writePatients)
	for _, p := range patients[:min(writePatients, len(patients))] {
		want[p] = true
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	pages := map[string][]byte{} // patient -> the search page, once read
	done := map[string]bool{}
	var out []writeTarget
	for len(done) < len(want) {
		line, err := r.ReadBytes('\n')
		if l := bytes.TrimSpace(line); len(l) > 0 {
			t, ok, terr := writeTargetOf(ctx, gr, l, want, done, pages, hdr)
			if terr != nil {
				return nil, terr
			}
			if ok {
				done[t.patient] = true
				delete(pages, t.patient)
				out = append(out, t)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, errors.New("bench: search-writes: no session record has a heart rate on its patient's first search page")
	}
	return out, nil
}

// writeTargetOf returns the write target line makes, if it is a session
// record of a wanted patient not done yet with a heart rate on the
// patient's first search page.
func writeTargetOf(ctx context.Context, gr *gatewayRun, line []byte, want, done map[string]bool, pages map[string][]byte, hdr http.Header) (writeTarget, bool, error) {
	var h clinic.Header
	if json.Unmarshal(line, &h) != nil || h.Kind != clinic.KindSession {
		return writeTarget{}, false, nil
	}
	var rec map[string]any
	if err := json.Unmarshal(line, &rec); err != nil {
		return writeTarget{}, false, nil
	}
	pat, _ := rec["patientId"].(string)
	pid := mapping.ResourceID(clinic.KindPatient, pat)
	if !want[pid] || done[pid] {
		return writeTarget{}, false, nil
	}
	page, ok := pages[pid]
	if !ok {
		b, status, err := get(ctx, gr.client, gr.base+searchPath(pid), hdr)
		if err != nil || status != http.StatusOK {
			return writeTarget{}, false, fmt.Errorf("bench: search-writes: search: status %d: %v", status, err)
		}
		pages[pid], page = b, b
	}
	vitals, _ := rec["vitals"].([]any)
	for k, v := range vitals {
		vs, _ := v.(map[string]any)
		hr, ok := vs["heartRate"].(float64)
		if !ok {
			continue
		}
		obs := mapping.ResourceID(clinic.KindSession, h.ID, "vitals", strconv.Itoa(k), "hr")
		if !bytes.Contains(page, []byte(obs)) {
			continue
		}
		t := writeTarget{patient: pid, obs: obs, values: [2]float64{hr + 1, hr + 2}}
		for j, val := range t.values {
			vs["heartRate"] = val
			b, err := json.Marshal(rec)
			if err != nil {
				return writeTarget{}, false, err
			}
			t.records[j] = b
		}
		return t, true, nil
	}
	return writeTarget{}, false, nil
}

// writer runs the scenario's writes until stop is called.
type writer struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stats  writeStats
}

// startWrites starts writing targets' records, writeRate a second, with
// the write token, and checking each with the read header.
func startWrites(ctx context.Context, gr *gatewayRun, targets []writeTarget, read http.Header, writeToken string) *writer {
	ctx, cancel := context.WithCancel(ctx)
	w := &writer{cancel: cancel}
	c := loadClient()
	post := http.Header{"Authorization": {"Bearer " + writeToken}, "Content-Type": {"application/x-ndjson"}, "Accept": {"application/json"}}
	w.wg.Go(func() {
		defer c.CloseIdleConnections()
		tick := time.NewTicker(time.Second / writeRate)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := w.writeOne(ctx, c, gr.base, &targets[i%len(targets)], read, post); err != nil && ctx.Err() == nil {
				w.stats.Failed++
				if w.stats.first == "" {
					w.stats.first = err.Error()
				}
			}
		}
	})
	return w
}

// stop ends the writes and returns what they did.
func (w *writer) stop() writeStats {
	w.cancel()
	w.wg.Wait()
	return w.stats
}

// writeOne reads t's patient's search (so its answer is cached), writes
// t's next record, and reads the search again: the Observation must carry
// the value written.
func (w *writer) writeOne(ctx context.Context, c *http.Client, base string, t *writeTarget, read, post http.Header) error {
	u := base + searchPath(t.patient)
	if _, status, err := get(ctx, c, u, read); err != nil || status != http.StatusOK {
		return fmt.Errorf("search before the write: status %d: %v", status, err)
	}
	j := t.n % 2
	t.n++
	body := append(append([]byte(nil), t.records[j]...), '\n')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/internal/v1/records", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = post.Clone()
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	rb, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	var ack struct {
		Results []struct {
			Outcome string `json:"outcome"`
		} `json:"results"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(rb, &ack) != nil || len(ack.Results) != 1 || ack.Results[0].Outcome != "updated" {
		return fmt.Errorf("write: status %d, not one record updated", resp.StatusCode)
	}
	acked := time.Now()
	b, status, err := get(ctx, c, u, read)
	if err != nil || status != http.StatusOK {
		return fmt.Errorf("search after the write: status %d: %v", status, err)
	}
	w.stats.lag += time.Since(acked)
	w.stats.Writes++
	got, found, err := obsValue(b, t.obs)
	if err != nil {
		return err
	}
	if !found || got != t.values[j] {
		w.stats.Stale++
	}
	return nil
}

// obsValue returns the valueQuantity.value of the Observation id in a
// search Bundle, and whether the Bundle holds it.
func obsValue(bundle []byte, id string) (float64, bool, error) {
	var b struct {
		Entry []struct {
			Resource struct {
				ID            string `json:"id"`
				ValueQuantity struct {
					Value float64 `json:"value"`
				} `json:"valueQuantity"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(bundle, &b); err != nil {
		return 0, false, fmt.Errorf("search after the write: %w", err)
	}
	for _, e := range b.Entry {
		if e.Resource.ID == id {
			return e.Resource.ValueQuantity.Value, true, nil
		}
	}
	return 0, false, nil
}

// prepareWrites finds search-writes' records in the synthesised file and
// obtains its write client's token.
func (ds *dataset) prepareWrites(ctx context.Context, gr *gatewayRun, file string) error {
	read := http.Header{"Authorization": {"Bearer " + gr.token}, "Accept": {"application/fhir+json"}}
	var err error
	if ds.writes, err = writeTargets(ctx, gr, file, ds.patients, read); err != nil {
		return err
	}
	t, err := newSoakToken(ctx, gr, writeScope)
	if err != nil {
		return fmt.Errorf("bench: search-writes: token: %w", err)
	}
	ds.writeToken = t.token
	return nil
}

// addWrites records the writes beside the scenario's figures; a stale
// answer, or a write that failed, fails the run.
func (r *scenarioResult) addWrites(ws writeStats, stderr io.Writer) error {
	r.Writes, r.StaleReads = ws.Writes, ws.Stale
	if ws.Writes > 0 {
		r.WriteLagMS = round3(float64(ws.lag) / float64(ws.Writes) / float64(time.Millisecond))
	}
	fmt.Fprintf(stderr, "bench: %s: %d records changed (%d failed), %d stale answers right after a write, %.2f ms from acknowledgement to the checked answer\n",
		r.Name, ws.Writes, ws.Failed, ws.Stale, r.WriteLagMS)
	switch {
	case ws.Stale > 0:
		return fmt.Errorf("%d of %d searches right after a write did not show it", ws.Stale, ws.Writes)
	case ws.Failed > 0:
		return fmt.Errorf("%d writes failed: %s", ws.Failed, ws.first)
	case ws.Writes == 0:
		return errors.New("no write was acknowledged")
	}
	return nil
}
