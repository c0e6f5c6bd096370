package main

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

const keysUsage = "keys rotate | keys list"

// cmdKeys administers the authorization server's signing keys: rotate makes a
// new key current (the old one keeps verifying until its tokens expired);
// list shows every stored key. Private keys are never printed.
func cmdKeys(ctx context.Context, args []string, e env) error {
	return verbCommand("keys", args, map[string]func([]string) error{
		"rotate": func(a []string) error { return keysRotate(ctx, a, e) },
		"list":   func(a []string) error { return keysList(ctx, a, e) },
	}, keysUsage)
}

func keysRotate(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("keys rotate")
	cfg, err := parseNoArgs(cf, args, e)
	if err != nil {
		return err
	}
	st, err := openAuthStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	var sealer *auth.KeySealer
	if cfg.KeyEncryptionKey != nil {
		if sealer, err = auth.NewKeySealer(cfg.KeyEncryptionKey); err != nil {
			return err
		}
	}
	ks, err := auth.LoadSealedKeySet(ctx, st, store.SystemClock{}, sealer)
	if err != nil {
		return err
	}
	if err := ks.Rotate(ctx); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "rotated: the new key signs from now on; retired keys keep verifying for", auth.AccessTTL)
	fmt.Fprintln(e.stdout, "(a running gateway picks the new key up when it reloads its keys or restarts)")
	return printKeys(ctx, st, e)
}

func keysList(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("keys list")
	cfg, err := parseNoArgs(cf, args, e)
	if err != nil {
		return err
	}
	st, err := openAuthStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	return printKeys(ctx, st, e)
}

// printKeys lists the stored keys with their status.
func printKeys(ctx context.Context, st store.AuthStore, e env) error {
	keys, err := st.ListKeys(ctx)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		fmt.Fprintln(e.stdout, "no signing keys (serve generates one on first start)")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tCREATED\tSTATUS")
	now := time.Now()
	// Current key(s) first, then the retired ones, most recently retired
	// first.
	sort.SliceStable(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.Retired.IsZero() != b.Retired.IsZero() {
			return a.Retired.IsZero()
		}
		if !a.Retired.Equal(b.Retired) {
			return a.Retired.After(b.Retired)
		}
		return a.Created.After(b.Created)
	})
	for _, k := range keys {
		status := "current"
		switch {
		case !k.Retired.IsZero() && now.Before(k.Retired.Add(auth.AccessTTL)):
			status = "retired " + k.Retired.UTC().Format(time.RFC3339) + " (still verifying)"
		case !k.Retired.IsZero():
			status = "retired " + k.Retired.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.KID, orDash(k.Alg), k.Created.UTC().Format(time.RFC3339), status)
	}
	return tw.Flush()
}
