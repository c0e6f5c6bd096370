package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/ingestapi"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/memory"
)

// ingestScope is the SMART scope the internal ingest API requires.
const ingestScope = ingestapi.Scope

// authState is the SMART side of a running gateway: the authorization server
// and the token verifier the FHIR and ingest APIs check every request with.
type authState struct {
	server *auth.Server
	tokens *auth.Tokens
	eph    store.Ephemeral
}

// openAuth loads (or on first start generates) the signing keys and the
// revocation set from the durable store and builds the authorization server.
func (a *app) openAuth(ctx context.Context) (*authState, error) {
	if a.auth != nil {
		return a.auth, nil
	}
	as, ok := a.store.(store.AuthStore)
	if !ok {
		return nil, fmt.Errorf("the store does not keep auth state")
	}
	clock := store.SystemClock{}
	sealer, err := a.keySealer()
	if err != nil {
		return nil, err
	}
	keys, err := auth.LoadSealedKeySet(ctx, as, clock, sealer)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	// One process keeps codes, launch ids, the jti replay set and throttling
	// in memory; replicas share them (and revocations) through Redis.
	var (
		eph  store.Ephemeral
		revs auth.Revocations
	)
	if a.redis != nil {
		eph = a.redis
		revs, err = auth.NewSharedRevocations(ctx, as, eph, clock)
	} else {
		eph = memory.NewEphemeral(clock)
		revs, err = auth.NewRevocations(ctx, as, clock)
	}
	if err != nil {
		return nil, fmt.Errorf("revocations: %w", err)
	}
	srv := auth.New(auth.Options{
		BaseURL:       a.cfg.BaseURL,
		Clients:       as,
		Users:         as,
		Grants:        as,
		Ephemeral:     eph,
		Keys:          keys,
		Patients:      fhir.NewPatientDirectory(a.store),
		Clock:         clock,
		Logger:        a.log,
		SecureCookies: strings.HasPrefix(a.cfg.BaseURL, "https://"),
	})
	srv.Tokens().SetRevocations(revs)
	a.auth = &authState{server: srv, tokens: srv.Tokens(), eph: eph}
	return a.auth, nil
}

// keySealer is the signing keys' encryption at rest, when configured. A
// shared database without it is allowed but logged: whoever reads the
// database could mint tokens.
func (a *app) keySealer() (*auth.KeySealer, error) {
	if a.cfg.KeyEncryptionKey == nil {
		if a.backend == "postgres" {
			a.log.Warn("signing keys are stored in the database unencrypted; set --key-encryption-key-file on every replica")
		}
		return nil, nil
	}
	return auth.NewKeySealer(a.cfg.KeyEncryptionKey)
}
