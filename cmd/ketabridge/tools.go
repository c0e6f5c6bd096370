package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"time"
)

var healthcheckCommand = &command{
	name: "healthcheck", args: "[--timeout D] [flags]",
	summary: "check a running gateway's /healthz on --addr (exit 0 when healthy; the container HEALTHCHECK)",
	flags: func(fs *flag.FlagSet) action {
		timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
		return func(ctx context.Context, inv *invocation) error {
			if err := healthcheck(ctx, inv, *timeout); err != nil {
				return fmt.Errorf("healthcheck: %v", err)
			}
			fmt.Fprintln(inv.e.stdout, "ok")
			return nil
		}
	},
}

// healthcheck asks the gateway of this configuration, on loopback, for
// /healthz.
func healthcheck(ctx context.Context, inv *invocation, timeout time.Duration) error {
	cfg := inv.cfg
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
			return errors.New("cannot load --tls-cert")
		}
		leaf := cert.Certificate[0]
		scheme = "https"
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: true, // replaced by the exact-certificate check below
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 || !bytes.Equal(raw[0], leaf) {
					return errors.New("the server's certificate is not --tls-cert")
				}
				return nil
			},
		}}}
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + "/healthz"
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d", url, resp.StatusCode)
	}
	return nil
}

var versionCommand = &command{
	name: "version", summary: "print the version",
	flags: func(*flag.FlagSet) action {
		return func(_ context.Context, inv *invocation) error {
			goVersion := "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
			}
			fmt.Fprintf(inv.e.stdout, "ketabridge %s (%s)\n", versionString(), goVersion)
			return nil
		}
	},
}
