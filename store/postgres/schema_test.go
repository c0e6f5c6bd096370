package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/postgres"
)

// TestNewSchema: a store opened at the schema's URL keeps its tables there,
// and drop removes them; a name that is not a plain identifier is refused.
func TestNewSchema(t *testing.T) {
	ctx := context.Background()
	base := databaseURL(t)
	if _, _, err := postgres.NewSchema(ctx, base, "x; DROP TABLE resources"); err == nil {
		t.Fatal("a schema name with SQL in it was accepted")
	}
	u := freshSchema(t)
	if !strings.Contains(u, "search_path=kb_test_") {
		t.Fatalf("schema URL %s", u)
	}
	st, err := postgres.Open(ctx, u, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutClient(ctx, store.Client{ID: "c1", Kind: store.ClientPublic}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetClient(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
}
