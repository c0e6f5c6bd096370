package bench

import (
	"context"
	"flag"
	"os"
	"testing"

	"github.com/ketabridge/ketabridge/server"
	"github.com/ketabridge/ketabridge/store"
)

// TestIngestFile: the records streamed from the synthesised file land
// whole, in batches, plainly and inside a bulk load, with the same
// outcomes, and the store answers searches after the load.
func TestIngestFile(t *testing.T) {
	ctx := context.Background()
	p := Params{Patients: 3, Seed: 1}
	file, err := synthFile(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(file) })
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	cf := server.AddFlags(fs)
	cfg, err := cf.Config(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var sums []string
	for _, bulk := range []bool{false, true} {
		gr, err := startGateway(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		in, err := ingestFile(ctx, gr.g, file, bulk)
		if err != nil {
			gr.stop()
			t.Fatal(err)
		}
		if in.bulk != bulk || in.sum.Rejected != 0 || in.sum.Created != in.records || in.records == 0 || len(in.patients) != p.Patients {
			gr.stop()
			t.Fatalf("bulk %v: %+v", bulk, in)
		}
		res, err := gr.g.Store().Search(ctx, store.Query{Type: "Observation", Patients: in.patients[:1], Total: true})
		gr.stop()
		if err != nil || res.Total == 0 {
			t.Fatalf("bulk %v: search after the ingest: %d, %v", bulk, res.Total, err)
		}
		sums = append(sums, fmtSum(in))
	}
	if sums[0] != sums[1] {
		t.Fatalf("plain %s, bulk %s", sums[0], sums[1])
	}
}

func fmtSum(in *ingested) string {
	return itoaSum(in.records) + "/" + itoaSum(in.sum.Created) + "/" + itoaSum(in.sum.Resources)
}

func itoaSum(n int) string { return thousands(n) }
