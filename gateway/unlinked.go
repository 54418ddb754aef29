package gateway

import (
	"net/http"
	"strings"

	"headgate/linker"
)

// The pages of a signed-in person whom no Headscale user is linked to. Each says why, as far
// as the linker found out, since the cure differs: a person whose email the provider has not
// verified can verify it, one whose email names several users needs an administrator.

// What linker.Link.Reason says about the email strategy, one part of the reasons it joins with
// "; ": the linker's own words, not a copy of them.
const (
	reasonNoEmail       = linker.ReasonNoEmail
	reasonUnverified    = linker.ReasonEmailUnverified
	reasonAmbiguous     = linker.ReasonEmailAmbiguous
	reasonOtherIdentity = linker.ReasonEmailOtherIdentity
)

// unlinkedPage tells a person signed in as email, whose identity resolved to link (not
// linked), why they have no Headscale user and what to do; signIn is where "Sign in again"
// goes, for when the cause is mended.
func unlinkedPage(email string, link linker.Link, signIn string) page {
	who := signedInAs(email)
	p := page{Status: http.StatusForbidden, Action: "Sign in again", ActionHref: signIn}
	switch unlinkedCause(link.Reason) {
	case reasonUnverified:
		p.Title = "Your email is not verified"
		p.Message = "You signed in as " + who + ", but your identity provider has not verified this address, so headgate cannot use it to find your Headscale user. " +
			"Verify it at your identity provider, then sign in again after a minute; or ask an administrator to link your Headscale user to this account."
	case reasonNoEmail:
		p.Title = "Your email was not shared"
		p.Message = "You signed in, but your identity provider did not tell headgate your email address, which headgate needs to find your Headscale user. " +
			"Ask an administrator to link your Headscale user, or to have the provider share your email, then sign in again."
	case reasonAmbiguous:
		p.Title = "Your email belongs to several Headscale users"
		p.Message = "You signed in as " + who + ", but more than one Headscale user has this email, so headgate cannot tell which one is yours. " +
			"Ask an administrator to leave the address on one user only, then sign in again."
	case reasonOtherIdentity:
		p.Title = "Your Headscale user belongs to another sign-in"
		p.Message = "You signed in as " + who + ". The Headscale user with this email was made for another account at an identity provider, so headgate does not hand it to this one. " +
			"Sign out and sign in with the account you use for Headscale, or ask an administrator to link your user."
		p.Action, p.ActionHref = "Sign out", "/oauth2/sign_out"
	default:
		p.Title = "No Headscale user"
		p.Message = "You signed in as " + who + ", but no Headscale user is linked to it. Ask an administrator to create or link your user, then sign in again."
	}
	return p
}

// unlinkedCause returns the part of reason, a linker.Link's, that a person can act on: one of
// the email strategy's reasons, or "" when the reasons only say that no user was found.
func unlinkedCause(reason string) string {
	for part := range strings.SplitSeq(reason, "; ") {
		switch {
		case part == reasonNoEmail, part == reasonUnverified, part == reasonOtherIdentity:
			return part
		case strings.HasPrefix(part, reasonAmbiguous+" ("):
			return reasonAmbiguous
		}
	}
	return ""
}
