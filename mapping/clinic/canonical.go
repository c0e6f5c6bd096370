package clinic

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
)

// Canonical returns the deterministic JSON of a record, used to hash it: the
// struct's fields in declaration order, empty optional fields left out, no
// HTML escaping, no trailing newline. Two records that decode to the same
// values (whatever their member order, whitespace or number spelling) have the
// same canonical form.
func Canonical(r Record) ([]byte, error) {
	r = asPointer(r)
	if r == nil {
		return nil, errors.New("clinic: canonical form of a missing record")
	}
	if _, ok := New(r.RecordKind()); !ok {
		return nil, errors.New("clinic: canonical form of a record of unknown kind")
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Hash returns the hex SHA-256 of Canonical(r), or "" when r has no canonical
// form (a nil record or an unknown kind).
func Hash(r Record) string {
	c, err := Canonical(r)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:])
}
