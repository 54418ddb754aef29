package linker

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// directory is one user listing indexed for matching. It is built once per listing and then
// only read, by any number of goroutines without locks.
type directory struct {
	// listedAt is when the listing was requested: what it says is at least this recent.
	listedAt time.Time
	users    []User
	// byProviderID maps a providerId, as stored and as cleaned, to the index of its user, or to
	// -1 when it names more than one user.
	byProviderID map[string]int32
	// byEmail maps an emailKey to how many users have it and the first of them.
	byEmail map[string]emailUsers
	// byName maps the nameKey of each user's name (as headgate sends it, see userName) to the
	// users that have it, when more than one does.
	byName map[string][]int32
}

type emailUsers struct {
	n, first int32
}

// Parts of Link.Reason a person can act on, for the gateway to tell them what to do. Reason joins
// the parts of every strategy with "; "; ReasonEmailAmbiguous is followed by " (N users)".
const (
	ReasonNoEmail            = "no email"
	ReasonEmailUnverified    = "email not verified"
	ReasonEmailAmbiguous     = "ambiguous email"
	ReasonEmailOtherIdentity = "email belongs to the user of another identity"
)

func newDirectory(users []User, listedAt time.Time) *directory {
	d := &directory{
		listedAt:     listedAt,
		users:        users,
		byProviderID: make(map[string]int32, len(users)),
		byEmail:      make(map[string]emailUsers, len(users)),
	}
	names := make(map[string]int32, len(users))
	for i := range users {
		u := &users[i]
		k := nameKey(userName(u))
		if j, ok := names[k]; ok {
			if d.byName == nil {
				d.byName = make(map[string][]int32)
			}
			if len(d.byName[k]) == 0 {
				d.byName[k] = []int32{j}
			}
			d.byName[k] = append(d.byName[k], int32(i))
		} else {
			names[k] = int32(i)
		}
		if u.ProviderID != "" {
			// Indexing the stored form as well as the cleaned one matches values 0.26+ stored
			// even if cleaning some odd value twice would change it again.
			d.addProviderID(u.ProviderID, i)
			if c := cleanProviderID(u.ProviderID); c != u.ProviderID {
				d.addProviderID(c, i)
			}
		}
		if u.Email != "" {
			k := emailKey(u.Email)
			e, ok := d.byEmail[k]
			if !ok {
				e.first = int32(i)
			}
			e.n++
			d.byEmail[k] = e
		}
	}
	return d
}

func (d *directory) addProviderID(pid string, i int) {
	if j, ok := d.byProviderID[pid]; ok && j != int32(i) {
		d.byProviderID[pid] = -1
		return
	}
	d.byProviderID[pid] = int32(i)
}

// match tries the strategies in order and links id, whose ProviderID is pid, to the first user
// one of them finds. Without a user, the Link's Reason says what each strategy saw. An
// identity of ResolveUser's is linked by user ID alone.
func (d *directory) match(strategies []string, id Identity, pid string) Link {
	if id.Issuer == userIDIssuer {
		return d.matchUserID(id.Subject)
	}
	var reasons []string
	for _, s := range strategies {
		var (
			i      int32
			reason string
		)
		switch s {
		case matchProviderID:
			i, reason = d.matchProviderID(pid)
		case matchEmail:
			i, reason = d.matchEmail(id, pid)
		default:
			continue
		}
		if reason == "" {
			return d.link(i, s)
		}
		reasons = append(reasons, reason)
	}
	return Link{Reason: strings.Join(reasons, "; "), ResolvedAt: d.listedAt}
}

// matchUserID links the user whose ID is id. The listing is searched in order: a device's link
// is resolved once per TTL, so an index of every ID would cost more than it saves.
func (d *directory) matchUserID(id string) Link {
	for i := range d.users {
		if d.users[i].ID == id {
			return d.link(int32(i), matchUserID)
		}
	}
	return Link{Reason: "no user with this id", ResolvedAt: d.listedAt}
}

func (d *directory) matchProviderID(pid string) (int32, string) {
	i, ok := d.byProviderID[pid]
	switch {
	case !ok:
		return 0, "no user with this provider id"
	case i < 0:
		return 0, "provider id shared by several users"
	}
	return i, ""
}

// matchEmail finds the one user with id's verified email. A user Headscale created for another
// OIDC identity is never taken over this way: the person behind the email may have signed in to
// Headscale through another provider, or the email may have been reassigned.
func (d *directory) matchEmail(id Identity, pid string) (int32, string) {
	switch {
	case id.Email == "":
		return 0, ReasonNoEmail
	case !id.EmailVerified:
		return 0, ReasonEmailUnverified
	}
	e, ok := d.byEmail[emailKey(id.Email)]
	switch {
	case !ok:
		return 0, "no user with this email"
	case e.n > 1:
		return 0, fmt.Sprintf("%s (%d users)", ReasonEmailAmbiguous, e.n)
	}
	if p := d.users[e.first].ProviderID; p != "" && p != pid && cleanProviderID(p) != pid {
		return 0, ReasonEmailOtherIdentity
	}
	return e.first, ""
}

// emailKey is the form under which two emails count as the same address: the same string but
// for the case of ASCII letters. Unicode case mapping is deliberately not applied: it would make
// different addresses one ("\u212aate" with a Kelvin sign lower-cases to "kate", "\u0130" to
// "i"), and an email match must never find another person's address.
func emailKey(email string) string {
	if !strings.ContainsFunc(email, func(r rune) bool { return 'A' <= r && r <= 'Z' }) {
		return email // most are stored lower-case already: no copy
	}
	b := []byte(email)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// link is the Link to user i found by method.
func (d *directory) link(i int32, method string) Link {
	u := &d.users[i]
	name := userName(u)
	var shared []string
	for _, j := range d.byName[nameKey(name)] {
		if j != i {
			shared = append(shared, d.users[j].ID)
		}
	}
	return Link{
		UserID:         u.ID,
		UserName:       name,
		DisplayName:    u.DisplayName,
		Email:          u.Email,
		Method:         method,
		NameSharedWith: shared,
		ResolvedAt:     d.listedAt,
	}
}

// userName is the name headgate sends for u. Headscale 0.28 and later fill an empty name with
// the email, then the providerId, then the id; earlier versions send it empty.
func userName(u *User) string {
	name := u.Name
	for _, fallback := range []string{u.Email, u.ProviderID, u.ID} {
		if name != "" {
			break
		}
		name = fallback
	}
	return name
}

// fold is the Unicode case folding of nameKey. A cases.Caser keeps state, so each call makes
// its own; the table behind it is shared.
func fold(s string) string { return cases.Fold().String(s) }

// nameKey is the form under which two user names count as the same name: without accents and
// other combining marks, without invisible format characters (such as a zero-width space),
// lower-cased, case-folded, compatibility-normalized (NFKC) and without surrounding white
// space. Headscale compares names exactly, but the apps behind headgate need not: Headplane
// trims the header it reads, and many apps compare user names without regard to case or
// Unicode form. So "Carol", " carol", "ca\u200brol", "cárol" and "ｃarol" (a full-width c) all
// share the key of "carol". Lower-casing comes before folding because Go's and other
// languages' lower-casing map "İ" (U+0130) to a plain "i", which folding alone keeps apart. A
// wider key only refuses more: two people whose names look alike are refused too.
func nameKey(name string) string {
	if isASCII(name) {
		// Every step but lower-casing and trimming leaves ASCII as it is: the same key, without
		// the normalizations' allocations for nearly every name of a listing.
		return strings.TrimSpace(strings.ToLower(name))
	}
	k := strings.Map(func(r rune) rune {
		if unicode.In(r, unicode.Mn, unicode.Cf) {
			return -1
		}
		return r
	}, norm.NFKD.String(name))
	k = norm.NFKC.String(fold(strings.ToLower(k)))
	return strings.TrimFunc(k, unicode.IsSpace)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
