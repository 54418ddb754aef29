package session

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// TestLocalViewKeys: IDs that differ are kept apart, whatever their form, including an ID of
// NewID's length whose last character only differs in the bits its 16 bytes do not use.
func TestLocalViewKeys(t *testing.T) {
	v := newLocalView()
	now := time.Now()
	id := NewID()
	// The last character of a 22-character ID carries 2 bits of the 16 bytes and 4 unused, zero
	// in NewID's IDs: a lax decoding would read the twin as the same 16 bytes.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	twin := id[:len(id)-1] + string(alphabet[strings.IndexByte(alphabet, id[len(id)-1])|1])
	a, err1 := base64.RawURLEncoding.DecodeString(id)
	b, err2 := base64.RawURLEncoding.DecodeString(twin)
	if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
		t.Fatalf("twin %q of %q: a lax decoding gives %x, %v and %x, %v, want the same bytes", twin, id, a, err1, b, err2)
	}
	ids := []string{id, twin, "live", "live2", "", id[:21], id + "A"}
	keys := map[viewKey]string{}
	for _, x := range ids {
		k := v.key(x)
		if other, ok := keys[k]; ok {
			t.Errorf("IDs %q and %q share a key", x, other)
		}
		keys[k] = x
	}
	v.confirm(id, 1, now, now.Add(time.Hour))
	v.revoke(twin, now.Add(time.Hour))
	if e, ok := v.get(id); !ok || e.revoked() || e.gen != 1 {
		t.Errorf("after its twin's revocation: got %+v, %v, want live in generation 1", e, ok)
	}
	if e, ok := v.get(twin); !ok || !e.revoked() {
		t.Errorf("twin: got %+v, %v, want revoked", e, ok)
	}
	if _, ok := v.get("live"); ok {
		t.Error("an ID never seen: got an entry, want none")
	}
}

// TestLocalViewGetAllocates: a check answered by the view allocates nothing, for an ID of
// NewID's form or any other.
func TestLocalViewGetAllocates(t *testing.T) {
	v := newLocalView()
	now := time.Now()
	for _, id := range []string{NewID(), "an ID of another form"} {
		v.confirm(id, 1, now, now.Add(time.Hour))
		if n := testing.AllocsPerRun(100, func() { v.get(id) }); n != 0 {
			t.Errorf("get(%q): got %v allocations, want 0", id, n)
		}
	}
}

// TestLocalViewDecode: an ID of NewID's form is keyed by the very 16 bytes it encodes.
func TestLocalViewDecode(t *testing.T) {
	v := newLocalView()
	for range 1000 {
		id := NewID()
		want, err := base64.RawURLEncoding.Strict().DecodeString(id)
		if err != nil {
			t.Fatal(err)
		}
		var k viewKey
		if !v.decode(id, &k) || !bytes.Equal(k[:], want) {
			t.Fatalf("decode(%q): got %x, want %x", id, k, want)
		}
	}
	for _, id := range []string{"", "short", "AAAAAAAAAAAAAAAAAAAAA=", "AAAAAAAAAAAAAAAAAAAA.A", "AAAAAAAAAAAAAAAAAAAAAB", "AAAAAAAAAAAAAAAAAAAAAAA"} {
		var k viewKey
		if v.decode(id, &k) {
			t.Errorf("decode(%q): got true, want false", id)
		}
	}
}
