package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net"

	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/server"
)

var serveCommand = &command{
	name: "serve", args: "[--demo] [flags]",
	summary: "run the gateway (--demo: load 12 synthetic patients once and register demo logins and clients)",
	flags: func(fs *flag.FlagSet) action {
		demo := fs.Bool("demo", false, "ingest 12 synthetic patients at start (idempotent) and register demo logins and clients")
		return func(ctx context.Context, inv *invocation) error { return serve(ctx, inv, *demo) }
	},
}

// serve runs the gateway until ctx is done, then shuts down gracefully.
func serve(ctx context.Context, inv *invocation, demo bool) error {
	cfg, e := inv.cfg, inv.e
	if demo && cfg.ClinicOrganization == "" {
		// The demo data's own clinic, so Provenance agents are references.
		cfg.ClinicOrganization = synth.OrgClinic
	}
	log := inv.logger()
	g, err := server.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	if limit := server.ApplyMemoryLimit(cfg); limit < math.MaxInt64 {
		log.Info("memory limit", "mib", limit>>20)
	}
	if cfg.GCPercent > 0 {
		log.Info("garbage collector", "gogc", cfg.GCPercent)
	}
	defer func() {
		if err := g.Close(); err != nil {
			log.Error("closing the audit writer and the store", "err", err)
		}
	}()
	if demo {
		if err := g.LoadDemo(ctx); err != nil {
			return err
		}
		if err := g.RegisterDemo(ctx, e.stdout); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %v", cfg.Addr, err)
	}
	addr := ln.Addr().String()
	fmt.Fprintf(e.stdout, "KetaBridge %s listening on %s\n", cfg.Version, addr)
	fmt.Fprintf(e.stdout, "FHIR base: %s   (internal ingest API: %s/internal/v1/records)\n", cfg.FHIRBase(), cfg.BaseURL)
	if cfg.TLSCert == "" {
		fmt.Fprintln(e.stdout, "Plain HTTP is for local use only: serve with --tls-cert/--tls-key, or put TLS in front, for anything else.")
	}
	if e.ready != nil {
		e.ready(addr)
	}
	return g.Serve(ctx, ln)
}
