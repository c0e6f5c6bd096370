package auth

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// sealedPrefix marks a signing key stored encrypted (store.SigningKey
// PrivatePEM): "kbenc1:" + base64(nonce || AES-256-GCM ciphertext).
var sealedPrefix = []byte("kbenc1:")

// KeySealer encrypts the signing keys the store keeps, with a key the
// replicas are given out of band (env or a mounted file), so a copy of the
// database alone cannot mint tokens.
type KeySealer struct{ aead cipher.AEAD }

// NewKeySealer takes a 32-byte key (AES-256-GCM).
func NewKeySealer(key []byte) (*KeySealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("auth: key-encryption key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &KeySealer{aead: aead}, nil
}

// seal encrypts a PEM private key; the kid is bound as associated data, so a
// sealed key cannot be swapped under another kid.
func (s *KeySealer) seal(kid string, pemBytes []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	ct := s.aead.Seal(nonce, nonce, pemBytes, []byte(kid))
	out := append([]byte{}, sealedPrefix...)
	return base64.StdEncoding.AppendEncode(out, ct), nil
}

// isSealed reports whether a stored key is encrypted.
func isSealed(stored []byte) bool { return bytes.HasPrefix(stored, sealedPrefix) }

// open decrypts a sealed key.
func (s *KeySealer) open(kid string, stored []byte) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(string(stored[len(sealedPrefix):]))
	if err != nil || len(raw) < s.aead.NonceSize() {
		return nil, errors.New("malformed sealed key")
	}
	pt, err := s.aead.Open(nil, raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():], []byte(kid))
	if err != nil {
		return nil, errors.New("cannot decrypt: wrong key-encryption key")
	}
	return pt, nil
}
