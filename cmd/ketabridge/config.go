package main

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Config is the configuration every subcommand shares, built once from flags
// with KETABRIDGE_* environment fallbacks (a flag beats the environment,
// which beats the default) and validated once at start.
type Config struct {
	// DataDir holds the SQLite database and other local state.
	DataDir string
	// DatabaseURL selects the database; empty is SQLite at DBPath.
	DatabaseURL string
	// RedisURL selects Redis for the read cache, the shared auth state and
	// the rate limits; empty is in-memory (one process).
	RedisURL string
	// RedisPrefix begins every Redis key; replicas of one gateway share it.
	RedisPrefix string
	// KeyEncryptionKey, read from --key-encryption-key-file, encrypts the
	// signing keys at rest (nil: stored in clear).
	KeyEncryptionKey []byte
	// ReadCache turns the read cache on (default) or off.
	ReadCache bool
	// CacheMB bounds the in-memory read cache (no Redis); 0 disables it.
	CacheMB int
	// RateLimit is the per-client request rate (tokens/s); 0 disables it.
	RateLimit float64
	// RateBurst is the per-client bucket size.
	RateBurst int
	// MetricsAddr, when set, is a separate listener for /metrics.
	MetricsAddr string
	// Addr is the listen address of serve, host:port.
	Addr string
	// BaseURL is the public base URL of the gateway (no trailing slash); the
	// FHIR base is BaseURL + "/fhir".
	BaseURL string
	// LogLevel is the minimum level logged.
	LogLevel slog.Level
	// TLSCert and TLSKey are PEM files; when set, serve speaks HTTPS only
	// (TLS 1.2 or later). Both or neither.
	TLSCert, TLSKey string
}

// DBPath is the SQLite database file.
func (c Config) DBPath() string { return filepath.Join(c.DataDir, "ketabridge.db") }

// FHIRBase is the FHIR base URL clients use.
func (c Config) FHIRBase() string { return c.BaseURL + "/fhir" }

// String describes the configuration with secrets (passwords in URLs)
// redacted, for logs.
func (c Config) String() string {
	return fmt.Sprintf("data-dir=%s database-url=%s redis-url=%s addr=%s base-url=%s log-level=%s read-cache=%t cache-mb=%d rate-limit=%g rate-burst=%d metrics-addr=%s",
		c.DataDir, redactURL(c.DatabaseURL), redactURL(c.RedisURL), c.Addr, c.BaseURL, c.LogLevel,
		c.ReadCache, c.CacheMB, c.RateLimit, c.RateBurst, c.MetricsAddr)
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// configError is a configuration problem: one line, exit code 2.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

// usageError is a command-line problem (unknown flag, missing argument): one
// line, exit code 2.
type usageError = configError

// errHelp asks for the usage text (-h): exit 0.
var errHelp = flag.ErrHelp

// sharedFlag is one shared setting: its flag, env variable and default.
type sharedFlag struct {
	name, env, def, usage string
}

var sharedFlags = []sharedFlag{
	{"data-dir", "KETABRIDGE_DATA_DIR", "./data", "directory for local state (SQLite database)"},
	{"database-url", "KETABRIDGE_DATABASE_URL", "", "postgres://... for PostgreSQL (replicas); empty = SQLite at {data-dir}/ketabridge.db"},
	{"redis-url", "KETABRIDGE_REDIS_URL", "", "redis://... for the read cache, shared auth state and rate limits of replicas; empty = in process"},
	{"redis-prefix", "KETABRIDGE_REDIS_PREFIX", "ketabridge:", "prefix of every Redis key (one per gateway deployment sharing a Redis)"},
	{"key-encryption-key-file", "KETABRIDGE_KEY_ENCRYPTION_KEY_FILE", "", "file holding a base64 32-byte key that encrypts the signing keys in the database (same file on every replica)"},
	{"read-cache", "KETABRIDGE_READ_CACHE", "on", "read cache: on (Redis when --redis-url is set, else in memory for SQLite) or off"},
	{"cache-mb", "KETABRIDGE_CACHE_MB", "32", "in-memory read cache size in MiB when no Redis is configured (0 = none)"},
	{"rate-limit", "KETABRIDGE_RATE_LIMIT", "200", "requests per second per OAuth client (token bucket; 0 = no limit)"},
	{"rate-burst", "KETABRIDGE_RATE_BURST", "400", "token-bucket size per OAuth client"},
	{"metrics-addr", "KETABRIDGE_METRICS_ADDR", "", "listen address of a separate /metrics listener; empty = /metrics on --addr for loopback callers only"},
	{"addr", "KETABRIDGE_ADDR", ":8080", "listen address host:port"},
	{"base-url", "KETABRIDGE_BASE_URL", "http://localhost:8080", "public base URL; the FHIR base is {base-url}/fhir"},
	{"log-level", "KETABRIDGE_LOG_LEVEL", "info", "log level: debug, info, warn or error"},
	{"tls-cert", "KETABRIDGE_TLS_CERT", "", "PEM certificate chain; with --tls-key, serve HTTPS (TLS >= 1.2)"},
	{"tls-key", "KETABRIDGE_TLS_KEY", "", "PEM private key of --tls-cert"},
}

// configFlags holds the shared flags of one subcommand's FlagSet.
type configFlags struct {
	fs   *flag.FlagSet
	vals map[string]*string
}

// newFlagSet returns a FlagSet for a subcommand with the shared flags
// registered. It never prints: errors come back from parse.
func newFlagSet(name string) *configFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cf := &configFlags{fs: fs, vals: map[string]*string{}}
	for _, f := range sharedFlags {
		cf.vals[f.name] = fs.String(f.name, f.def, f.usage+" (env "+f.env+")")
	}
	return cf
}

// parse parses args and builds the validated Config. getenv supplies the
// environment (os.Getenv in main).
func (cf *configFlags) parse(args []string, getenv func(string) string) (Config, error) {
	if err := cf.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, errHelp
		}
		return Config{}, &usageError{msg: cf.fs.Name() + ": " + err.Error()}
	}
	set := map[string]bool{}
	cf.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	vals := map[string]string{}
	source := map[string]string{}
	for _, f := range sharedFlags {
		v, src := *cf.vals[f.name], "--"+f.name
		if !set[f.name] {
			if e := getenv(f.env); e != "" {
				v, src = e, f.env
			} else {
				src = "default --" + f.name
			}
		}
		vals[f.name], source[f.name] = v, src
	}
	bad := func(name, why string) error {
		return &configError{msg: "invalid " + source[name] + ": " + why}
	}

	var c Config
	c.DataDir = strings.TrimSpace(vals["data-dir"])
	if c.DataDir == "" {
		return Config{}, bad("data-dir", "must not be empty")
	}

	c.DatabaseURL = strings.TrimSpace(vals["database-url"])
	if c.DatabaseURL != "" {
		u, err := url.Parse(c.DatabaseURL)
		switch {
		case err != nil || u.Scheme == "":
			return Config{}, bad("database-url", "must be a URL such as postgres://host/db, or empty for SQLite")
		case u.Scheme == "postgres" || u.Scheme == "postgresql":
			if u.Host == "" && u.Query().Get("host") == "" {
				return Config{}, bad("database-url", "must name the server, e.g. postgres://user@db.example.org:5432/ketabridge")
			}
		default:
			return Config{}, bad("database-url", "unsupported scheme "+strconv.Quote(u.Scheme)+" (postgres://..., or empty for SQLite)")
		}
	}

	c.RedisURL = strings.TrimSpace(vals["redis-url"])
	if c.RedisURL != "" {
		u, err := url.Parse(c.RedisURL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			return Config{}, bad("redis-url", "must be redis://host:port/db or rediss://... (or empty for the in-memory cache)")
		}
	}

	c.RedisPrefix = strings.TrimSpace(vals["redis-prefix"])
	if c.RedisPrefix == "" || len(c.RedisPrefix) > 64 || strings.ContainsAny(c.RedisPrefix, " *?[]\n") {
		return Config{}, bad("redis-prefix", "must be 1-64 characters without spaces or glob characters")
	}
	if f := strings.TrimSpace(vals["key-encryption-key-file"]); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return Config{}, bad("key-encryption-key-file", "cannot read it: "+err.Error())
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(key) != 32 {
			return Config{}, bad("key-encryption-key-file", "must hold 32 random bytes in base64 (e.g. from `openssl rand -base64 32`)")
		}
		c.KeyEncryptionKey = key
	}
	switch strings.ToLower(strings.TrimSpace(vals["read-cache"])) {
	case "on", "true", "1":
		c.ReadCache = true
	case "off", "false", "0":
	default:
		return Config{}, bad("read-cache", "must be on or off")
	}
	var err error
	if c.CacheMB, err = strconv.Atoi(strings.TrimSpace(vals["cache-mb"])); err != nil || c.CacheMB < 0 || c.CacheMB > 1<<16 {
		return Config{}, bad("cache-mb", "must be a whole number of MiB from 0 (no cache) to 65536")
	}
	if c.RateLimit, err = strconv.ParseFloat(strings.TrimSpace(vals["rate-limit"]), 64); err != nil || c.RateLimit < 0 || math.IsInf(c.RateLimit, 0) || math.IsNaN(c.RateLimit) {
		return Config{}, bad("rate-limit", "must be requests per second per client, >= 0 (0 = no limit)")
	}
	if c.RateBurst, err = strconv.Atoi(strings.TrimSpace(vals["rate-burst"])); err != nil || c.RateBurst < 1 {
		return Config{}, bad("rate-burst", "must be a whole number >= 1")
	}
	c.MetricsAddr = strings.TrimSpace(vals["metrics-addr"])
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return Config{}, bad("metrics-addr", "must be host:port, e.g. :9090")
		}
	}

	c.Addr = strings.TrimSpace(vals["addr"])
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return Config{}, bad("addr", "must be host:port, e.g. :8080 or 127.0.0.1:8080")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return Config{}, bad("addr", "port must be a number from 0 to 65535")
	}
	if strings.ContainsAny(host, "/ ") {
		return Config{}, bad("addr", "host must be an IP address or a host name")
	}

	c.BaseURL = strings.TrimRight(strings.TrimSpace(vals["base-url"]), "/")
	u, err := url.Parse(c.BaseURL)
	switch {
	case err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return Config{}, bad("base-url", "must be an absolute http(s) URL, e.g. https://fhir.example.org")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(c.BaseURL, "#"):
		return Config{}, bad("base-url", "must not have a query or fragment")
	case u.User != nil:
		return Config{}, bad("base-url", "must not contain credentials")
	}

	c.TLSCert, c.TLSKey = strings.TrimSpace(vals["tls-cert"]), strings.TrimSpace(vals["tls-key"])
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return Config{}, &configError{msg: "invalid TLS configuration: give both --tls-cert and --tls-key, or neither"}
	case c.TLSCert != "":
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			return Config{}, bad("tls-cert", "cannot load the certificate and key: "+err.Error())
		}
	}

	switch strings.ToLower(strings.TrimSpace(vals["log-level"])) {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info":
		c.LogLevel = slog.LevelInfo
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		return Config{}, bad("log-level", "must be debug, info, warn or error")
	}
	return c, nil
}
