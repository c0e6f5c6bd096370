package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelp: `ketabridge --help` lists every subcommand; `ketabridge
// COMMAND --help` prints that command's own usage and flags, and a group's
// help its verbs.
func TestHelp(t *testing.T) {
	var all []string
	for _, c := range commands {
		all = append(all, c.name)
		for _, v := range c.verbs {
			all = append(all, v.name)
		}
	}
	tests := []struct {
		name string
		args []string
		want []string // in stdout
		not  []string // not in stdout
	}{
		{"global", []string{"--help"}, append([]string{"conformance export", "users add|list|remove", "KETABRIDGE_DATA_DIR"}, topNames()...), nil},
		{"help word", []string{"help"}, []string{"serve", "conformance"}, nil},
		{"help COMMAND", []string{"help", "clients", "add"}, []string{"usage: ketabridge clients add", "--redirect-uri"}, nil},
		{"clients add", []string{"clients", "add", "--help"}, []string{"usage: ketabridge clients add", "--jwks-file", "--secret-file",
			"shared flags", "--data-dir"}, []string{"commands:", "--password-file"}},
		{"users add", []string{"users", "add", "-h"}, []string{"usage: ketabridge users add", "--password-file", "--fhir-user"},
			[]string{"--jwks-file"}},
		{"serve", []string{"serve", "--help"}, []string{"usage: ketabridge serve", "--demo", "--clinic-organization"}, []string{"--patients"}},
		{"conformance export", []string{"conformance", "export", "--help"}, []string{"--patients", "--out"}, nil},
		{"a group", []string{"keys", "--help"}, []string{"usage: ketabridge keys rotate|list", "rotate", "list"}, []string{"--data-dir"}},
		{"import", []string{"import", "--help"}, []string{"usage: ketabridge import FILE"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tc.args, env{stdout: &stdout, stderr: &stderr}); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("no %q in:\n%s", w, stdout.String())
				}
			}
			for _, w := range tc.not {
				if strings.Contains(stdout.String(), w) {
					t.Errorf("%q in:\n%s", w, stdout.String())
				}
			}
		})
	}
	t.Run("every command has its own help", func(t *testing.T) {
		for _, name := range all {
			var stdout bytes.Buffer
			args := append(strings.Fields(name), "--help")
			if code := run(context.Background(), args, env{stdout: &stdout, stderr: &stdout}); code != 0 ||
				!strings.HasPrefix(stdout.String(), "usage: ketabridge "+name) {
				t.Errorf("%s --help: exit %d\n%s", name, code, stdout.String())
			}
		}
	})
}

// topNames are the top-level command names.
func topNames() []string {
	var ns []string
	for _, c := range commands {
		ns = append(ns, "  "+c.name)
	}
	return ns
}

// TestUsageErrors: a bad command line or configuration is exit code 2 and
// one line on stderr, naming what is wrong and never a password.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no command", nil, nil, ""},
		{"unknown command", []string{"frobnicate"}, nil, `unknown command "frobnicate"`},
		{"group without verb", []string{"users"}, nil, "users: want a subcommand: add, list, remove"},
		{"unknown verb", []string{"keys", "delete"}, nil, `keys: unknown subcommand "delete"`},
		{"unknown flag", []string{"serve", "--nope"}, nil, "serve: flag provided but not defined: -nope"},
		{"unexpected argument", []string{"serve", "extra"}, nil, `serve: unexpected argument "extra"`},
		{"missing argument", []string{"import"}, nil, "import: want FILE"},
		{"bad flag value", []string{"serve", "--database-url", "mysql://u:secret@db/kb"}, nil, "unsupported scheme"},
		{"bad environment value", []string{"version"}, map[string]string{"KETABRIDGE_LOG_LEVEL": "loud"}, "invalid KETABRIDGE_LOG_LEVEL"},
		{"bad identifier-system base", []string{"serve", "--identifier-system-base", "sid/"}, nil, "invalid --identifier-system-base"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args,
				env{stdout: &stdout, stderr: &stderr, getenv: envOf(tc.env)})
			if code != 2 {
				t.Fatalf("exit code %d, want 2; stderr %q", code, stderr.String())
			}
			if tc.want == "" {
				return
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("stderr %q, want one line containing %q", stderr.String(), tc.want)
			}
			if strings.Contains(stderr.String(), "secret") {
				t.Error("stderr leaks a password")
			}
		})
	}
}
