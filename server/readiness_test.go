package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/store"
)

// TestReadinessDuringIngest: /readyz stays 200 "ready" while a large ingest
// holds the SQLite writer, and reports the writer's lag beside it. Before,
// the probe queued behind the writer and answered 503 "database down", so a
// load balancer pulled a healthy replica.
func TestReadinessDuringIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("ingests a large batch")
	}
	cfg, err := parse([]string{"--data-dir", t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g, err := Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	wl, ok := g.store.(store.WriterLagger)
	if !ok {
		t.Fatal("the SQLite store reports no writer lag")
	}
	readyz := func() (int, map[string]any) {
		w := httptest.NewRecorder()
		g.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		var body map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		return w.Code, body
	}

	var buf bytes.Buffer
	if _, err := synth.Generate(&buf, synth.Options{Patients: 8, Seed: 3, Start: DemoStart}); err != nil {
		t.Fatal(err)
	}
	batch, err := ingest.ReadNDJSON(&buf, ingest.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	svc := g.Ingester()
	svc.SetChunk(batch.Len()) // one store write: the writer is held for the whole batch
	svc.SetChunkResources(1 << 30)
	done := make(chan error, 1)
	go func() {
		_, _, err := svc.IngestBatch(ctx, batch, nil)
		done <- err
	}()
	probes, whileBusy := 0, 0
	var maxLag float64
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		default:
		}
		busy := wl.WriterLag() > 0
		code, body := readyz()
		probes++
		if code != http.StatusOK || body["status"] != "ready" {
			t.Fatalf("/readyz during the ingest: %d %v", code, body)
		}
		if busy && wl.WriterLag() > 0 {
			whileBusy++
			lag, _ := body["writer_lag_seconds"].(map[string]any)
			if l, _ := lag["database"].(float64); l > maxLag {
				maxLag = l
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d probes, %d while the writer was held, writer lag up to %.3f s", probes, whileBusy, maxLag)
	if whileBusy == 0 || maxLag == 0 {
		t.Errorf("no probe answered while the writer was held (%d probes), lag %v", probes, maxLag)
	}
	if _, body := readyz(); body["writer_lag_seconds"].(map[string]any)["database"] != 0.0 {
		t.Errorf("writer lag after the ingest: %v", body)
	}
}
