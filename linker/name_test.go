package linker

import (
	"slices"
	"strings"
	"testing"
)

func TestNameKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		same bool
	}{
		{"carol", "carol", true},
		{"carol", "Carol", true},
		{"carol", "CAROL", true},
		{"carol", " carol", true},
		{"carol", "carol\t", true},
		{"carol", "\u00a0carol", true}, // no-break space, which JavaScript's trim removes
		{"carol", "\ufeffcarol", true}, // byte order mark
		{"carol", "ca\u200brol", true}, // zero-width space
		{"carol", "ca\u00adrol", true}, // soft hyphen
		{"carol", "\uff43arol", true},  // full-width c
		{"kate", "\u212aate", true},    // Kelvin sign
		{"strasse", "straße", true},    // full case folding
		{"ǆ", "dž", true},              // compatibility ligature
		{"café", "cafe\u0301", true},   // composed and decomposed é
		{"i\u0307", "\u0130", true},    // dotted capital I folds to i and a combining dot
		{"carol", "carol2", false},
		{"carol", "caro l", false},     // inner spaces are part of the name
		{"carol", "c\u0430rol", false}, // a Cyrillic a is another letter
		{"i", "\u0130", true},          // some upstreams lower-case İ to a plain i
		{"alice@example.com", "alice", false},
	}
	for _, tt := range tests {
		if got := nameKey(tt.a) == nameKey(tt.b); got != tt.same {
			t.Errorf("nameKey(%q) == nameKey(%q): got %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
}

// TestResolveSharedName: Headscale names are not unique, so a link says which other users share
// its name, whoever the person is and however they were matched.
func TestResolveSharedName(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	cliCarol := f.add("carol", "carol@example.com", "")
	oidcCarol := f.add("Carol", "carol2@example.com", oidcID("carol-sub"))
	padded := f.add(" carol", "", "")
	dave := f.add("dave", "dave@example.com", oidcID("dave-sub"))
	noName := f.add("", "erin@example.com", oidcID("erin-sub")) // sent as erin@example.com
	erinName := f.add("erin@example.com", "", "")
	l := newTestLinker(f, Config{Match: []string{"provider_id", "email"}}, nil)

	tests := []struct {
		name       string
		id         Identity
		wantUser   string
		wantShared []string
	}{
		{"by provider id", identity("carol-sub", ""), oidcCarol.ID, []string{cliCarol.ID, padded.ID}},
		{"by email", Identity{Issuer: testIssuer, Subject: "x-sub", Email: "carol@example.com", EmailVerified: true},
			cliCarol.ID, []string{oidcCarol.ID, padded.ID}},
		{"unique name", identity("dave-sub", ""), dave.ID, nil},
		{"name filled in from the email", identity("erin-sub", ""), noName.ID, []string{erinName.ID}},
	}
	for _, tt := range tests {
		got := mustResolve(t, l, tt.id)
		if got.UserID != tt.wantUser {
			t.Errorf("%s: user: got %q, want %q", tt.name, got.UserID, tt.wantUser)
		}
		if !slices.Equal(got.NameSharedWith, tt.wantShared) || got.NameShared() != (tt.wantShared != nil) {
			t.Errorf("%s: shared with: got %q (NameShared %v), want %q", tt.name, got.NameSharedWith, got.NameShared(), tt.wantShared)
		}
	}
}

// TestResolveSharedNameWhenListingTooLarge: without the full listing, the linker asks Headscale
// for every user with the name of the one it found.
func TestResolveSharedNameWhenListingTooLarge(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	f.add("carol", "", "")
	carol := f.add("carol", "carol@example.com", "")
	f.add("bob", "bob@example.com", "")
	f.change(func(f *fakeHeadscale) { f.tooLarge = true })
	l := newTestLinker(f, Config{Match: []string{"provider_id", "email"}}, nil)

	got := mustResolve(t, l, Identity{Issuer: testIssuer, Subject: "c-sub", Email: "carol@example.com", EmailVerified: true})
	if got.UserID != carol.ID || !slices.Equal(got.NameSharedWith, []string{"1"}) {
		t.Errorf("carol: got %+v, want user %s shared with [1]", got, carol.ID)
	}
	bob := mustResolve(t, l, Identity{Issuer: testIssuer, Subject: "b-sub", Email: "bob@example.com", EmailVerified: true})
	if bob.UserName != "bob" || bob.NameShared() {
		t.Errorf("bob: got %+v, want bob, not shared", bob)
	}
}

// TestResolveEmailUnicodeNeverMatchesAnotherAddress: only ASCII letters compare without regard
// to case; no Unicode case mapping, folding or normalization can make another address match.
func TestResolveEmailUnicodeNeverMatchesAnotherAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		claim, stored string
		match         bool
	}{
		{"Kate@Example.COM", "kate@example.com", true},
		{"\u212aate@example.com", "kate@example.com", false}, // Kelvin sign
		{"kate@example.com", "\u212aate@example.com", false},
		{"\u0130van@example.com", "ivan@example.com", false}, // dotted capital I
		{"\u0131van@example.com", "ivan@example.com", false}, // dotless i
		{"ivan@example.com", "\u0130van@example.com", false},
		{"stra\u00dfe@example.com", "strasse@example.com", false},  // ß
		{"\u017fam@example.com", "sam@example.com", false},         // long s folds to s
		{"\uff4bate@example.com", "kate@example.com", false},       // full-width k
		{"cafe\u0301@example.com", "caf\u00e9@example.com", false}, // decomposed é
		{"kate@example.com\u200b", "kate@example.com", false},      // zero-width space
		{"k\u0430te@example.com", "kate@example.com", false},       // Cyrillic a
		{"kate@ex\u0430mple.com", "kate@example.com", false},       // in the domain
		{"J\u00f6rg@example.com", "j\u00f6rg@example.com", true},   // the ASCII J only
		{"J\u00d6RG@example.com", "j\u00f6rg@example.com", false},  // Ö is not ASCII
		{"\u00e9mile@example.com", "\u00e9mile@example.com", true}, // exact non-ASCII
		{" kate@example.com", "kate@example.com", false},           // surrounding space
		{"kate@example.com.", "kate@example.com", false},           // trailing dot
	}
	for _, tt := range tests {
		f := newFakeHeadscale(t)
		u := f.add("kate", tt.stored, "")
		l := newTestLinker(f, Config{Match: []string{"email"}}, nil)
		got := mustResolve(t, l, Identity{Issuer: testIssuer, Subject: "k-sub", Email: tt.claim, EmailVerified: true})
		if got.Linked() != tt.match || tt.match && got.UserID != u.ID {
			t.Errorf("claim %q, stored %q: got %+v, want linked %v", tt.claim, tt.stored, got, tt.match)
		}
	}
}

// TestNameKeyASCIIFastPath: the shortcut for ASCII names gives the key the full normalization
// gives.
func TestNameKeyASCIIFastPath(t *testing.T) {
	t.Parallel()
	// A non-ASCII letter appended forces the full normalization; it keys as "e" (the accent
	// removed), so the rest of that key is the name's, but for the trailing space it kept.
	full := func(name string) string { return strings.TrimSpace(strings.TrimSuffix(nameKey(name+"\u00e9"), "e")) }
	for _, name := range []string{"carol", "Carol", " CAROL\t", "a.b-c_d@example.com", "x\r\ny", "", "   ", "MiXeD 42"} {
		if got, want := nameKey(name), full(name); got != want {
			t.Errorf("nameKey(%q): got %q, want %q (the full normalization's)", name, got, want)
		}
	}
}
