package store

import "testing"

func TestNormalizeString(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"ascii lower", "smith", "smith"},
		{"ascii upper", "SMITH", "smith"},
		{"umlaut", "Müller", "muller"},
		{"acute and tilde", "José Núñez", "jose nunez"},
		{"decomposed input", "Mu\u0308ller", "muller"},
		{"cedilla", "François", "francois"},
		{"sharp s", "Straße", "strasse"},
		{"stroke letters", "Øster Łódź", "oster lodz"},
		{"greek", "Ωμέγα", "ωμεγα"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := NormalizeString(tc.in)
			if got != tc.want {
				t.Errorf("NormalizeString(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if again := NormalizeString(got); again != got {
				t.Errorf("not idempotent: %q -> %q", got, again)
			}
		})
	}
}
