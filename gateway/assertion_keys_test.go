package gateway

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"headgate/session"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// publishedKeys reads a key set as an upstream would.
func publishedKeys(t *testing.T, jwks []byte) *oidc.StaticKeySet {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	keys := &oidc.StaticKeySet{}
	for _, k := range set.Keys {
		keys.PublicKeys = append(keys.PublicKeys, k.Key.(crypto.PublicKey))
	}
	return keys
}

// TestStoredKeysRotate: two instances sharing Redis sign with the same generated key within a
// period and switch to the next key when it ends, and an upstream holding either instance's key
// set verifies every assertion signed around the rotation, even when the instances' clocks
// differ. The key is unreadable in Redis without the session secret.
func TestStoredKeysRotate(t *testing.T) {
	client := testRedis(t)
	prefix := fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano())
	t.Cleanup(func() {
		keys, _ := client.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			client.Del(context.Background(), keys...)
		}
	})
	cookies, err := session.NewCookies(defaulted(session.Config{Secret: session.Secrets{strings.Repeat("s", 32)}}), true)
	if err != nil {
		t.Fatal(err)
	}
	const period = time.Hour
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	instance := func(now *time.Time) *asserter {
		src := storedKeys{store: session.NewRedisStore(client, prefix, session.DefaultTiming()), sealer: cookies, period: period, timeout: 5 * time.Second}
		first, err := src.keys(*now)
		if err != nil {
			t.Fatal(err)
		}
		a := newAsserter("https://gate.example.com/oauth2", 5*time.Minute, func() time.Time { return *now }, first)
		a.rotate = src.keys
		a.rotateFailed = func(err error) { t.Errorf("rotate: %v", err) }
		return a
	}
	nowA, nowB := start.Add(58*time.Minute), start.Add(58*time.Minute)
	a, b := instance(&nowA), instance(&nowB)
	who := assertionClaims{Subject: "alice-sub"}
	verify := func(keys *oidc.StaticKeySet, token string, at time.Time) error {
		_, err := oidc.NewVerifier("https://gate.example.com/oauth2", keys, &oidc.Config{ClientID: "aud",
			SupportedSigningAlgs: []string{"ES256"}, Now: func() time.Time { return at }}).Verify(context.Background(), token)
		return err
	}
	sign := func(x *asserter, session string) string {
		t.Helper()
		tok, err := x.assertion(session, "aud", who)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	before := sign(a, "s1")
	if err := verify(publishedKeys(t, b.currentKeys(nowB).jwks), before, nowB); err != nil {
		t.Errorf("instance B's key set does not verify instance A's assertion: %v", err)
	}
	if string(a.currentKeys(nowA).jwks) != string(b.currentKeys(nowB).jwks) {
		t.Error("the instances publish different key sets")
	}

	// A's clock passes the hour; B's is a little behind.
	nowA, nowB = start.Add(period+time.Minute), start.Add(period-time.Second)
	after := sign(a, "s2")
	if after[:strings.IndexByte(after, '.')] == before[:strings.IndexByte(before, '.')] {
		t.Error("the key did not change at the end of the period")
	}
	if err := verify(publishedKeys(t, b.currentKeys(nowB).jwks), after, nowA); err != nil {
		t.Errorf("instance B, not yet rotated, does not publish the key A signs with now: %v", err)
	}
	if err := verify(publishedKeys(t, a.currentKeys(nowA).jwks), before, nowA); err != nil {
		t.Errorf("after the rotation, an assertion signed just before it no longer verifies: %v", err)
	}
	nowB = nowA
	if sign(b, "s3")[:strings.IndexByte(after, '.')] != after[:strings.IndexByte(after, '.')] {
		t.Error("after the rotation the instances sign with different keys")
	}

	keys, _ := client.Keys(context.Background(), prefix+"shared:assertion-key:*").Result()
	for _, k := range keys {
		v, _ := client.Get(context.Background(), k).Result()
		if strings.Contains(v, "PRIVATE") || len(v) < 100 {
			t.Errorf("%s holds %q, want a sealed key", k, v)
		}
		if ttl := client.PTTL(context.Background(), k).Val(); ttl > 3*period {
			t.Errorf("%s kept for %v, want at most three periods", k, ttl)
		}
	}
}

// TestStoredKeysStoreDown: when the store does not answer at a rotation, the current key keeps
// signing (it is still published), the failure is reported, and the rotation is tried again a
// minute later, not on every request.
func TestStoredKeysStoreDown(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 59, 0, 0, time.UTC)
	keys := testKeys(t, 1)
	keys.until = now.Add(time.Minute)
	a := newAsserter("https://gate.example.com/oauth2", 5*time.Minute, func() time.Time { return now }, keys)
	tries := 0
	var failures []error
	a.rotate = func(time.Time) (*assertionKeys, error) { tries++; return nil, errors.New("store unavailable") }
	a.rotateFailed = func(err error) { failures = append(failures, err) }
	first, _ := a.assertion("s1", "aud", assertionClaims{Subject: "a"})
	now = now.Add(2 * time.Minute)
	for i := range 5 {
		if _, err := a.assertion(fmt.Sprint("s", i+2), "aud", assertionClaims{Subject: "a"}); err != nil {
			t.Fatalf("signing while the store is down: %v", err)
		}
	}
	if tries != 1 || len(failures) != 1 {
		t.Errorf("rotation tried %d times and reported %d failures in the first minute, want 1 and 1", tries, len(failures))
	}
	now = now.Add(time.Minute)
	a.assertion("s9", "aud", assertionClaims{Subject: "a"})
	if tries != 2 {
		t.Errorf("rotation tried %d times after a minute, want 2", tries)
	}
	if err := oidcVerify(t, a, first, now); err != nil {
		t.Errorf("the key that kept signing is no longer published: %v", err)
	}
}

func oidcVerify(t *testing.T, a *asserter, token string, at time.Time) error {
	_, err := oidc.NewVerifier(a.issuer, publishedKeys(t, a.currentKeys(at).jwks), &oidc.Config{ClientID: "aud",
		SupportedSigningAlgs: []string{"ES256"}, Now: func() time.Time { return at }}).Verify(context.Background(), token)
	return err
}
