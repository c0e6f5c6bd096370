package sqlcore

import (
	"testing"
	"testing/fstest"
)

func TestMigrationsNumberedOnce(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	good := fstest.MapFS{"migrations/0001_a.sql": file("A"), "migrations/0002_b.sql": file("B")}
	if ms, err := Migrations(good); err != nil || len(ms) != 2 || ms[1].Version != 2 {
		t.Fatalf("%+v %v", ms, err)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"repeat": {"migrations/0001_a.sql": file("A"), "migrations/0002_b.sql": file("B"), "migrations/0002_c.sql": file("C")},
		"gap":    {"migrations/0001_a.sql": file("A"), "migrations/0003_c.sql": file("C")},
		"name":   {"migrations/first.sql": file("A")},
	} {
		if _, err := Migrations(fsys); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
