package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// NewKey generates an Ed25519 key whose id is derived from its public half
// (the first 16 bytes of its SHA-256, base64url), so ids never collide by
// accident and say nothing secret.
func NewKey() (Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	sum := sha256.Sum256(pub)
	return Key{ID: base64.RawURLEncoding.EncodeToString(sum[:16]), Private: priv}, nil
}

func fillRandom(b []byte) { _, _ = rand.Read(b) }
