package bulkclient

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestDownloadAll: files are downloaded at most parallel at once (and more
// than one at a time); a download broken mid-body resumes with a Range
// request from the bytes on disk and the file comes whole; a refusal is
// not tried again.
func TestDownloadAll(t *testing.T) {
	const parallel = 3
	body := func(i int) string {
		return strings.Repeat(fmt.Sprintf(`{"resourceType":"Patient","id":"p%d"}`+"\n", i), 2000)
	}
	var inflight, peak atomic.Int32
	var mu sync.Mutex
	requests := map[string][]string{} // file: the Range of each request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		mu.Lock()
		requests[name] = append(requests[name], r.Header.Get("Range"))
		tries := len(requests[name])
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if name == "refused" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(30 * time.Millisecond) // long enough for the downloads to overlap
		i, _ := strconv.Atoi(name)
		b := body(i)
		if rg := r.Header.Get("Range"); rg != "" {
			start, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(b)-1, len(b)))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write([]byte(b[start:]))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		if name == "2" && tries == 1 {
			// Half the file, then the connection breaks.
			_, _ = w.Write([]byte(b[:len(b)/2]))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		_, _ = w.Write([]byte(b))
	}))
	defer srv.Close()
	c := &Client{HTTP: srv.Client(), Token: func(context.Context) (string, error) { return "tok", nil }, RetryWait: time.Millisecond}
	dir := t.TempDir()
	var files []File
	want := int64(0)
	for i := range 7 {
		files = append(files, File{URL: srv.URL + "/" + strconv.Itoa(i), Path: filepath.Join(dir, strconv.Itoa(i)+".ndjson")})
		want += int64(len(body(i)))
	}
	// An earlier export's file of the same name is overwritten, not resumed.
	if err := os.WriteFile(files[4].Path, []byte(`{"resourceType":"Patient","id":"old"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := c.DownloadAll(context.Background(), files, parallel, 3)
	if err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Errorf("%d bytes, want %d", n, want)
	}
	for i, f := range files {
		b, err := os.ReadFile(f.Path)
		if err != nil || string(b) != body(i) {
			t.Errorf("file %d: %d bytes, want %d (%v)", i, len(b), len(body(i)), err)
		}
	}
	if p := peak.Load(); p < 2 || p > parallel {
		t.Errorf("%d downloads at once, want 2 to %d", p, parallel)
	}
	if r := requests["4"]; len(r) != 1 || r[0] != "" {
		t.Errorf("a file left by an earlier export was fetched with %q, want one whole request", r)
	}
	if r := requests["2"]; len(r) != 2 || r[0] != "" || !strings.HasPrefix(r[1], "bytes=") || r[1] == "bytes=0-" {
		t.Errorf("the broken file's requests: %q, want a whole one then a resumed range", r)
	}

	refused := []File{{URL: srv.URL + "/refused", Path: filepath.Join(dir, "refused.ndjson")}}
	if _, err := c.DownloadAll(context.Background(), refused, parallel, 3); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("refused download: %v", err)
	}
	if r := requests["refused"]; len(r) != 1 {
		t.Errorf("a refused download was tried %d times", len(r))
	}
}
