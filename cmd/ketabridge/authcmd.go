package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"unicode"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/postgres"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// Shared plumbing of the auth administration subcommands (users, clients,
// keys): each takes a verb (add, list, remove, ...) then flags.

// verbCommand splits "VERB flags..." and runs the verb's function.
func verbCommand(name string, args []string, verbs map[string]func([]string) error, usageLine string) error {
	if len(args) == 0 {
		return &usageError{msg: name + ": want a subcommand: " + usageLine}
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		return errHelp
	}
	fn, ok := verbs[args[0]]
	if !ok {
		return &usageError{msg: fmt.Sprintf("%s: unknown subcommand %q: %s", name, args[0], usageLine)}
	}
	return fn(args[1:])
}

// parseNoArgs parses the flags and rejects positional arguments.
func parseNoArgs(cf *configFlags, args []string, e env) (Config, error) {
	cfg, err := cf.parse(args, e.getenv)
	if err != nil {
		return Config{}, err
	}
	if cf.fs.NArg() > 0 {
		return Config{}, &usageError{msg: cf.fs.Name() + ": unexpected argument " + fmt.Sprintf("%q", cf.fs.Arg(0))}
	}
	return cfg, nil
}

// adminStore is what the registry and audit subcommands use: the durable
// auth state and the audit trail of the configured database.
type adminStore interface {
	store.AuthStore
	store.AuditStore
	Close() error
}

// openAuthStore opens the configured database (PostgreSQL when
// --database-url is set, else the SQLite store in the data directory,
// created when missing) for the registry and audit subcommands.
func openAuthStore(ctx context.Context, cfg Config) (adminStore, error) {
	if cfg.DatabaseURL != "" {
		st, err := postgres.Open(ctx, cfg.DatabaseURL, store.SystemClock{})
		if err != nil {
			return nil, &exitError{code: 1, msg: fmt.Sprintf("cannot open the PostgreSQL store (%s): %v", redactURL(cfg.DatabaseURL), err)}
		}
		return st, nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, &exitError{code: 1, msg: fmt.Sprintf("cannot create data directory %s: %v", cfg.DataDir, err)}
	}
	st, err := sqlite.Open(ctx, cfg.DBPath(), store.SystemClock{})
	if err != nil {
		return nil, &exitError{code: 1, msg: fmt.Sprintf("cannot open the SQLite store at %s: %v", cfg.DBPath(), err)}
	}
	return st, nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ",") }

func (m *multiFlag) Set(v string) error {
	*m = append(*m, v)
	return nil
}

// readSecret reads a password or secret from file ("-" or empty: stdin),
// dropping one trailing line break. Secrets never come from flag values,
// which other users of the machine can read in the process list.
func readSecret(file string, stdin io.Reader) (string, error) {
	var b []byte
	var err error
	if file == "" || file == "-" {
		if stdin == nil {
			return "", fmt.Errorf("no input on stdin")
		}
		b, err = io.ReadAll(io.LimitReader(stdin, 4097))
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return "", err
	}
	if len(b) > 4096 {
		return "", fmt.Errorf("longer than 4096 bytes")
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	return string(b), nil
}

// validID checks a login or client id: 1 to 64 printable characters without
// spaces.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// checkWebURL checks an absolute https URL (http only for loopback hosts),
// without credentials or fragment (RFC 6749 §3.1.2: a redirection URI is
// absolute and has no fragment).
func checkWebURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("must be an absolute URL")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Errorf("must not have a fragment")
	case u.User != nil:
		return fmt.Errorf("must not contain credentials")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && auth.IsLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("must use https (http is allowed for loopback hosts only)")
	default:
		return fmt.Errorf("must be an http(s) URL")
	}
}
