package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate and key for 127.0.0.1 and returns their
// paths and a pool trusting the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestServeTLS: with --tls-cert/--tls-key the gateway speaks HTTPS only,
// with TLS 1.2 or later; TLS 1.0/1.1 handshakes are refused
// (docs/design/security.md NET-2, NEG-51).
func TestServeTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	certFile, keyFile, pool := selfSigned(t)
	base, _, stop := startServe(t, t.TempDir(), "--tls-cert", certFile, "--tls-key", keyFile)
	defer stop()
	addr := strings.TrimPrefix(base, "http://")

	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := c.Get("https://" + addr + "/fhir/metadata")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("https metadata: %d %+v", resp.StatusCode, resp.TLS)
	}

	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v})
		if err == nil {
			conn.Close()
			t.Errorf("TLS version %x handshake accepted", v)
		}
	}

	// The Docker HEALTHCHECK probe speaks TLS to its own process.
	_, port, _ := net.SplitHostPort(addr)
	var out, errOut strings.Builder
	if code := run(context.Background(), []string{"healthcheck", "--addr", "127.0.0.1:" + port, "--tls-cert", certFile, "--tls-key", keyFile},
		env{stdout: &out, stderr: &errOut, getenv: envOf(nil)}); code != 0 {
		t.Errorf("healthcheck over TLS exited %d: %s", code, errOut.String())
	}

	// Plain HTTP to the TLS port gets no FHIR answer.
	if resp, err := http.Get("http://" + addr + "/fhir/metadata"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered 200 on the TLS listener")
		}
	}
}

func TestServeTLSHalfConfigured(t *testing.T) {
	certFile, _, _ := selfSigned(t)
	var out, errOut strings.Builder
	code := run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--tls-cert", certFile},
		env{stdout: &out, stderr: &errOut, getenv: envOf(nil)})
	if code != 2 || !strings.Contains(errOut.String(), "both --tls-cert and --tls-key") || strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}
