package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
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
	// RedisURL selects the cache; empty is the in-memory cache.
	RedisURL string
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
	return fmt.Sprintf("data-dir=%s database-url=%s redis-url=%s addr=%s base-url=%s log-level=%s",
		c.DataDir, redactURL(c.DatabaseURL), redactURL(c.RedisURL), c.Addr, c.BaseURL, c.LogLevel)
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
	{"database-url", "KETABRIDGE_DATABASE_URL", "", "database URL; empty = SQLite at {data-dir}/ketabridge.db"},
	{"redis-url", "KETABRIDGE_REDIS_URL", "", "Redis URL; empty = in-memory cache"},
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
			return Config{}, &configError{msg: "postgres support is not built yet (issue 5); leave " +
				source["database-url"] + " empty to use SQLite in the data directory"}
		default:
			return Config{}, bad("database-url", "unsupported scheme "+strconv.Quote(u.Scheme)+" (empty = SQLite)")
		}
	}

	c.RedisURL = strings.TrimSpace(vals["redis-url"])
	if c.RedisURL != "" {
		return Config{}, &configError{msg: "redis support is not built yet; leave " + source["redis-url"] +
			" empty to use the in-memory cache"}
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
