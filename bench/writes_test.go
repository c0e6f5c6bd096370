package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestWriteCheckSeesStaleAnswers runs the search-writes check against a
// server whose search answer follows the writes and one whose answer never
// changes (a cache that was not told): the first must count no stale
// answer, the second one per write.
func TestWriteCheckSeesStaleAnswers(t *testing.T) {
	const obs = "obs-1"
	rec := func(hr float64) []byte {
		b, _ := json.Marshal(map[string]any{"kind": "session", "id": "s1", "vitals": []any{map[string]any{"heartRate": hr}}})
		return b
	}
	for _, follows := range []bool{true, false} {
		var mu sync.Mutex
		value := 70.0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if r.Method == http.MethodPost {
				var got struct {
					Vitals []struct {
						HeartRate float64 `json:"heartRate"`
					} `json:"vitals"`
				}
				b, _ := io.ReadAll(r.Body)
				if err := json.Unmarshal([]byte(strings.TrimSpace(string(b))), &got); err != nil || len(got.Vitals) != 1 {
					http.Error(w, "bad record", http.StatusBadRequest)
					return
				}
				if follows {
					value = got.Vitals[0].HeartRate
				}
				_, _ = w.Write([]byte(`{"summary":{"updated":1},"results":[{"index":0,"outcome":"updated"}]}`))
				return
			}
			b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "entry": []any{
				map[string]any{"resource": map[string]any{"resourceType": "Observation", "id": "other", "valueQuantity": map[string]any{"value": 71.0}}},
				map[string]any{"resource": map[string]any{"resourceType": "Observation", "id": obs, "valueQuantity": map[string]any{"value": value}}},
			}})
			_, _ = w.Write(b)
		}))
		tg := writeTarget{patient: "p1", obs: obs, values: [2]float64{71, 72}, records: [2][]byte{rec(71), rec(72)}}
		w := &writer{}
		for range 4 {
			if err := w.writeOne(context.Background(), srv.Client(), srv.URL, &tg, http.Header{}, http.Header{}); err != nil {
				t.Fatal(err)
			}
		}
		srv.Close()
		want := 0
		if !follows {
			want = 4
		}
		if w.stats.Writes != 4 || w.stats.Stale != want {
			t.Errorf("answers follow the writes: %v: %d writes, %d stale, want 4 and %d", follows, w.stats.Writes, w.stats.Stale, want)
		}
	}
}
