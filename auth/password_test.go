package auth

import (
	"strings"
	"testing"
)

func TestHashPassword(t *testing.T) {
	h, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q is not a PHC argon2id string with the OWASP parameters", h)
	}
	if parts := strings.Split(h, "$"); len(parts) != 6 || len(parts[4]) != 22 || len(parts[5]) != 43 {
		t.Errorf("hash %q: want a 16-byte salt and a 32-byte key in unpadded base64", h)
	}
	h2, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if h == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	if _, err := HashPassword(""); err == nil {
		t.Error("empty password hashed")
	}
}

func TestCheckPassword(t *testing.T) {
	const pw = "s3cret-Ketamine!"
	h, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(h, "$")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	tests := []struct {
		name string
		hash string
		pw   string
		want bool
	}{
		{"right password", h, pw, true},
		{"wrong password", h, pw + "x", false},
		{"empty password", h, "", false},
		{"case differs", h, strings.ToUpper(pw), false},
		{"empty hash", "", pw, false},
		{"garbage", "not-a-hash", pw, false},
		{"argon2i", with(1, "argon2i"), pw, false},
		{"bcrypt", "$2a$10$abcdefghijklmnopqrstuuRW8m5zG3Lg3D1V2a0bE5XlB8k9rjh2", pw, false},
		{"old version", with(2, "v=16"), pw, false},
		{"params changed", with(3, "m=19456,t=3,p=1"), pw, false},
		{"params reordered", with(3, "t=2,m=19456,p=1"), pw, false},
		{"params trailing junk", with(3, "m=19456,t=2,p=1,x=1"), pw, false},
		{"memory too large", with(3, "m=4194304,t=2,p=1"), pw, false},
		{"zero time", with(3, "m=19456,t=0,p=1"), pw, false},
		{"zero threads", with(3, "m=19456,t=2,p=0"), pw, false},
		{"bad salt base64", with(4, "!!!"), pw, false},
		{"padded salt", with(4, parts[4]+"=="), pw, false},
		{"short key", with(5, "AAAA"), pw, false},
		{"truncated key", with(5, parts[5][:len(parts[5])-1]), pw, false},
		{"extra field", h + "$x", pw, false},
		{"missing leading dollar", strings.TrimPrefix(h, "$"), pw, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := CheckPassword(tc.hash, tc.pw); got != tc.want {
				t.Errorf("CheckPassword = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCheckPasswordKnownVector checks interoperability with the reference
// implementation: the hashes below were produced by libargon2 (the
// phc-winner-argon2 C library, argon2id_hash_encoded with a 32-byte output).
func TestCheckPasswordKnownVector(t *testing.T) {
	tests := []struct {
		name, hash, pw string
	}{
		{"m=65536,t=2,p=4", "$argon2id$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$GpZ3sK/oH9p7VIiV56G/64Zo/8GaUw434IimaPqxwCo", "password"},
		{"OWASP parameters", "$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$fyKQ6NMcsMwO+sNH/vQbDP/4mXe3RvvO24xejRPfAtc", "s3cret-Ketamine!"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !CheckPassword(tc.hash, tc.pw) {
				t.Error("reference argon2id hash does not verify")
			}
			if CheckPassword(tc.hash, tc.pw[:len(tc.pw)-1]) {
				t.Error("reference hash verifies a wrong password")
			}
		})
	}
}
