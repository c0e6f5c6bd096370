package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// TestAuditArchiveCLI: `audit drop` refuses days never exported; `audit
// export --before` writes the whole past days as AuditEvent NDJSON (mode
// 0600) and records them; `audit drop` then deletes exactly those days and
// keeps the later ones (docs/design/security.md AUD-ARCH-1).
func TestAuditArchiveCLI(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openData(t, dir)
	today := store.AuditDayStart(time.Now())
	old1, old2 := today.AddDate(0, 0, -3), today.AddDate(0, 0, -2)
	var recs []store.AuditRecord
	for i, at := range []time.Time{old1.Add(time.Hour), old1.Add(2 * time.Hour), old2.Add(time.Hour), today.AddDate(0, 0, -1).Add(time.Hour)} {
		recs = append(recs, store.AuditRecord{ID: fmt.Sprintf("ev-%d", i), Recorded: at, Interaction: "read",
			Type: "Observation", ResourceID: "o1", Patient: "p1", Status: 200, ClientID: "ehr-1"})
	}
	if err := st.AppendAudit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	st.Close()
	cut := today.AddDate(0, 0, -1).Format(time.DateOnly) // drops old1 and old2, keeps yesterday

	t.Run("bad input", func(t *testing.T) {
		for _, args := range [][]string{
			{"audit", "drop"},
			{"audit", "drop", "--before", "yesterday"},
			{"audit", "drop", "--before", today.AddDate(0, 0, 2).Format(time.DateOnly)},
			{"audit", "export", "--before", cut}, // no --out
		} {
			if r := runCLI(t, dir, "", args...); r.code != 2 {
				t.Errorf("%v: exit %d (%s), want 2", args, r.code, r.stderr)
			}
		}
	})
	t.Run("drop before export is refused", func(t *testing.T) {
		r := runCLI(t, dir, "", "audit", "drop", "--before", cut)
		if r.code != 1 || !strings.Contains(r.stderr, "never exported") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	})
	out := filepath.Join(dir, "audit-old.ndjson")
	t.Run("export before", func(t *testing.T) {
		r := runCLI(t, dir, "", "audit", "export", "--before", cut, "--out", out)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		fi, err := os.Stat(out)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v, want 0600", out, err, fi.Mode().Perm())
		}
		body, _ := os.ReadFile(out)
		var ids []string
		for l := range strings.Lines(string(body)) {
			var ev struct {
				ResourceType, ID string
			}
			if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.ResourceType != "AuditEvent" {
				t.Fatalf("line %q: %v", l, err)
			}
			ids = append(ids, ev.ID)
		}
		if strings.Join(ids, ",") != "ev-0,ev-1,ev-2" {
			t.Errorf("exported %v, want ev-0,ev-1,ev-2", ids)
		}
		days := runCLI(t, dir, "", "audit", "days")
		if days.code != 0 || !strings.Contains(days.stdout, old1.Format(time.DateOnly)+"  2       2") {
			t.Errorf("audit days: %d\n%s", days.code, days.stdout)
		}
	})
	t.Run("drop after export", func(t *testing.T) {
		r := runCLI(t, dir, "", "audit", "drop", "--before", cut)
		if r.code != 0 || !strings.Contains(r.stdout, "dropped 3 AuditEvents of 2 days") {
			t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
		st := openData(t, dir)
		got, err := st.ListAudit(ctx, time.Time{}, 0)
		if err != nil || len(got) != 1 || got[0].ID != "ev-3" {
			t.Fatalf("after the drop: %+v, %v; want ev-3 only", got, err)
		}
	})
}
