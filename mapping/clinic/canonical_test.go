package clinic

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCanonicalAndHash(t *testing.T) {
	_, byKey := baseBatch(t)
	base := byKey[ivSession]
	decode := func(t *testing.T, b []byte) Record {
		t.Helper()
		r, errs := Decode(b)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		return r
	}
	want := Hash(decode(t, base))
	if len(want) != 64 || strings.Trim(want, "0123456789abcdef") != "" {
		t.Fatalf("Hash = %q, want 64 hex digits", want)
	}
	m := jsonObject(t, base)
	reordered, _ := json.MarshalIndent(m, "", "   ") // map keys sorted: a different member order
	changed := jsonObject(t, base)
	setPath(t, changed, "vitals[0].heartRate", 73, false)
	changedJSON, _ := json.Marshal(changed)
	respelled := strings.Replace(string(base), `"weightKg":72.4`, `"weightKg":7.240e1`, 1)

	tests := []struct {
		name string
		data []byte
		same bool
	}{
		{"identical", base, true},
		{"reordered and indented", reordered, true},
		{"number spelled differently", []byte(respelled), true},
		{"changed value", changedJSON, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Hash(decode(t, tc.data)); (got == want) != tc.same {
				t.Fatalf("Hash equal = %v, want %v", got == want, tc.same)
			}
		})
	}

	t.Run("value and pointer agree", func(t *testing.T) {
		r := decode(t, base).(*Session)
		if Hash(*r) != want {
			t.Fatal("Hash of a Session value differs from its pointer")
		}
	})
	t.Run("no HTML escaping", func(t *testing.T) {
		o := &Organization{Header: Header{Kind: KindOrganization, ID: "o"}, Name: "A & B <C>", Type: "clinic"}
		c, err := Canonical(o)
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"kind":"organization","id":"o","name":"A & B <C>","type":"clinic"}`; string(c) != want {
			t.Fatalf("Canonical = %s, want %s", c, want)
		}
	})
	t.Run("nil record", func(t *testing.T) {
		if _, err := Canonical(nil); err == nil {
			t.Fatal("Canonical(nil) succeeded")
		}
		if h := Hash((*Patient)(nil)); h != "" {
			t.Fatalf("Hash(nil) = %q", h)
		}
	})
}
