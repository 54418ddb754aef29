package testbed

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// DefaultHeadscaleVersion is the Headscale release a Stack runs unless Options.HeadscaleVersion
// names another: the newest, which the tools module in tools/peers pins.
const DefaultHeadscaleVersion = "0.29.3"

// headscaleRelease is a Headscale release a Stack can run, and what the harness does
// differently for it.
type headscaleRelease struct {
	version string
	// module is the directory under tools/ whose go.mod pins the release's cmd/headscale.
	module string
	// binary is the executable's file name in BinDir.
	binary string
	// authIDPrefix starts the registration ID of Headscale's own OIDC login,
	// /register/ID: "hskey-authreq-" from 0.29; before, the ID is 24 bare characters.
	authIDPrefix string
	// apiKeyPrefix starts the key `headscale apikeys create` prints: "hskey-api-" from 0.28;
	// before, a key is 7 characters, a dot and the secret, and apiKeyPrefix is empty.
	apiKeyPrefix string
	// loginStatus is the status with which Headscale answers its OIDC login, once it has made
	// the user, when no node waits for the registration: 410 Gone from 0.27; 0.26 answers 500
	// ("node not found in registration cache").
	loginStatus int
}

// headscaleReleases returns every release the harness runs, oldest first. Each release before
// the default has a tools module of its own, tools/headscale-VERSION, and a binary of its own,
// BinDir/headscale-VERSION; the default is built from tools/peers into BinDir/headscale.
func headscaleReleases() []headscaleRelease {
	older := func(version, apiKeyPrefix string, loginStatus int) headscaleRelease {
		return headscaleRelease{
			version: version, module: "headscale-" + version, binary: "headscale-" + version,
			apiKeyPrefix: apiKeyPrefix, loginStatus: loginStatus,
		}
	}
	return []headscaleRelease{
		older("0.26.1", "", http.StatusInternalServerError),
		older("0.27.1", "", http.StatusGone),
		older("0.28.0", "hskey-api-", http.StatusGone),
		{
			version: DefaultHeadscaleVersion, module: "peers", binary: "headscale",
			authIDPrefix: "hskey-authreq-", apiKeyPrefix: "hskey-api-", loginStatus: http.StatusGone,
		},
	}
}

// HeadscaleVersions returns every Headscale release a Stack can run, oldest first.
func HeadscaleVersions() []string {
	var versions []string
	for _, r := range headscaleReleases() {
		versions = append(versions, r.version)
	}
	return versions
}

// findHeadscaleRelease returns the release of version; empty means DefaultHeadscaleVersion.
func findHeadscaleRelease(version string) (headscaleRelease, error) {
	if version == "" {
		version = DefaultHeadscaleVersion
	}
	for _, r := range headscaleReleases() {
		if r.version == version {
			return r, nil
		}
	}
	return headscaleRelease{}, fmt.Errorf("headscale %s: not a release the harness runs (%s)",
		version, strings.Join(HeadscaleVersions(), ", "))
}

// ParseHeadscaleVersions reads a list of Headscale releases, such as the value of
// HEADGATE_HEADSCALE_VERSIONS: versions separated by commas or spaces, or "all" for every
// release. Empty means the default release alone. A version the harness cannot run is an
// error, never silently left out.
func ParseHeadscaleVersions(list string) ([]string, error) {
	fields := strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' })
	switch {
	case len(fields) == 0:
		return []string{DefaultHeadscaleVersion}, nil
	case len(fields) == 1 && fields[0] == "all":
		return HeadscaleVersions(), nil
	}
	var versions []string
	var errs []error
	for _, f := range fields {
		v := strings.TrimPrefix(f, "v")
		if _, err := findHeadscaleRelease(v); err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.Contains(versions, v) {
			versions = append(versions, v)
		}
	}
	return versions, errors.Join(errs...)
}

// isAPIKey reports whether key, printed by the release's `headscale apikeys create`, looks like
// an API key of the release's format.
func (r headscaleRelease) isAPIKey(key string) bool {
	if r.apiKeyPrefix != "" {
		return strings.HasPrefix(key, r.apiKeyPrefix)
	}
	prefix, secret, ok := strings.Cut(key, ".")
	return ok && len(prefix) == 7 && secret != "" && !strings.ContainsAny(key, " \n")
}
