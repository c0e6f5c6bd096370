package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/ketabridge/ketabridge/mapping/synth"
)

func cmdSynth(_ context.Context, args []string, e env) error {
	cf := newFlagSet("synth")
	patients := cf.fs.Int("patients", 10, "number of synthetic patients")
	seed := cf.fs.Int64("seed", 1, "random seed (same seed, same records)")
	out := cf.fs.String("out", "", "output file (default stdout)")
	startStr := cf.fs.String("start", demoStart.Format(time.DateOnly), "first treatment day, YYYY-MM-DD")
	if _, err := cf.parse(args, e.getenv); err != nil {
		return err
	}
	if cf.fs.NArg() > 0 {
		return &usageError{msg: fmt.Sprintf("synth: unexpected argument %q", cf.fs.Arg(0))}
	}
	if *patients < 1 || *patients > 1_000_000 {
		return &usageError{msg: "invalid --patients: must be from 1 to 1000000"}
	}
	start, err := time.Parse(time.DateOnly, *startStr)
	if err != nil {
		return &usageError{msg: "invalid --start: must be a date YYYY-MM-DD"}
	}
	var w io.Writer = e.stdout
	var f *os.File
	if *out != "" && *out != "-" {
		if f, err = os.Create(*out); err != nil {
			return &exitError{code: 1, msg: fmt.Sprintf("synth: %v", err)}
		}
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	stats, err := synth.Generate(bw, synth.Options{Patients: *patients, Seed: *seed, Start: start})
	if err == nil {
		err = bw.Flush()
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("synth: %v", err)}
	}
	if f != nil {
		fmt.Fprintf(e.stderr, "synth: wrote %d records to %s\n", stats.Records, *out)
	}
	return nil
}

func cmdHealthcheck(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("healthcheck")
	timeout := cf.fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	cfg, err := cf.parse(args, e.getenv)
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(cfg.Addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme, client := "http", http.DefaultClient
	if cfg.TLSCert != "" {
		// The probe asks its own process on loopback: it trusts exactly the
		// leaf certificate the server was given, whatever names it carries.
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil || len(cert.Certificate) == 0 {
			return &exitError{code: 1, msg: "healthcheck: cannot load --tls-cert"}
		}
		leaf := cert.Certificate[0]
		scheme = "https"
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: true, // replaced by the exact-certificate check below
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 || !bytes.Equal(raw[0], leaf) {
					return fmt.Errorf("the server's certificate is not --tls-cert")
				}
				return nil
			},
		}}}
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + "/healthz"
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return &exitError{code: 1, msg: "healthcheck: " + err.Error()}
	}
	resp, err := client.Do(req)
	if err != nil {
		return &exitError{code: 1, msg: "healthcheck: " + err.Error()}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return &exitError{code: 1, msg: fmt.Sprintf("healthcheck: %s answered %d", url, resp.StatusCode)}
	}
	fmt.Fprintln(e.stdout, "ok")
	return nil
}
