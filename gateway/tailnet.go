package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"headgate/session"
)

// TailnetConfig puts headgate on the tailnet as a node of its own, beside its ordinary
// listener. A request that reaches headgate over the tailnet is signed in as the Headscale
// user who owns the sending device, as the control server states it: no identity provider,
// no cookie. The section is off while control_url is empty; it needs a headgate built with
// the tailnet listener (go build -tags tailnet).
type TailnetConfig struct {
	// ControlURL is the control server the node joins: Headscale's URL as its clients reach
	// it. Empty: no tailnet listener.
	ControlURL string `yaml:"control_url"`

	// AuthKey is a Headscale pre-auth key for the node's first start (headscale preauthkeys
	// create). Once joined, the node's key is kept in StateDir and AuthKey is not used again.
	// AuthKeyFile names a file holding it instead.
	AuthKey     string `yaml:"auth_key"`
	AuthKeyFile string `yaml:"auth_key_file"`

	// Hostname is the node's name on the tailnet. Default "headgate".
	Hostname string `yaml:"hostname"`

	// Listen is the port headgate serves on at its tailnet addresses, such as ":80". Plain
	// HTTP: the tailnet itself encrypts and authenticates every packet. Default ":80".
	Listen string `yaml:"listen"`

	// StateDir keeps the node's keys and state between starts. Required; it must be
	// writable, and no other node may use it.
	StateDir string `yaml:"state_dir"`

	// Ephemeral registers the node as ephemeral: Headscale removes it soon after it goes
	// offline, and the next start joins anew with AuthKey.
	Ephemeral bool `yaml:"ephemeral"`

	// IdentityTTL is how long what the control server said about a peer's device is reused
	// for further requests from that peer before it is asked again: the longest a removed
	// device, or one whose key expired, is still let in. At most 5m. Default 10s.
	IdentityTTL time.Duration `yaml:"identity_ttl"`
}

// Defaults and bounds of TailnetConfig.
const (
	defaultTailnetHostname    = "headgate"
	defaultTailnetListen      = ":80"
	defaultTailnetIdentityTTL = 10 * time.Second
	maxTailnetIdentityTTL     = 5 * time.Minute
)

// Enabled reports whether headgate joins the tailnet.
func (c TailnetConfig) Enabled() bool { return c.ControlURL != "" }

func (c *TailnetConfig) setDefaults() {
	if !c.Enabled() {
		return
	}
	if c.Hostname == "" {
		c.Hostname = defaultTailnetHostname
	}
	if c.Listen == "" {
		c.Listen = defaultTailnetListen
	}
	if c.IdentityTTL == 0 {
		c.IdentityTTL = defaultTailnetIdentityTTL
	}
}

func (c TailnetConfig) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("tailnet."+format, args...)) }
	if !c.Enabled() {
		if c.AuthKey != "" || c.AuthKeyFile != "" || c.Hostname != "" || c.Listen != "" || c.StateDir != "" || c.Ephemeral || c.IdentityTTL != 0 {
			add("control_url: required to join the tailnet (the other tailnet keys are set)")
		}
		return errs
	}
	if !tailnetBuilt {
		add("control_url: this headgate was built without the tailnet listener (build it with: go build -tags tailnet)")
	}
	if _, err := checkURL(c.ControlURL); err != nil {
		add("control_url: %v", err)
	}
	if c.AuthKey != "" && c.AuthKeyFile != "" {
		add("auth_key: set either auth_key or auth_key_file, not both")
	}
	if !validNodeName(c.Hostname) {
		add("hostname: must be 1 to 63 letters, digits and \"-\", not starting or ending with \"-\" (got %q)", c.Hostname)
	}
	if port, ok := strings.CutPrefix(c.Listen, ":"); !ok || !validPort(port) {
		add("listen: must be a port such as \":80\" (got %q)", c.Listen)
	}
	if c.StateDir == "" {
		add("state_dir: required (the node's keys are kept there)")
	}
	if c.IdentityTTL < 0 || c.IdentityTTL > maxTailnetIdentityTTL {
		add("identity_ttl: must be between 0 and %v (got %v)", maxTailnetIdentityTTL, c.IdentityTTL)
	}
	return errs
}

// validNodeName reports whether s can be a node's host name: one DNS label.
func validNodeName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validPort reports whether s is a TCP port number, 1 to 65535, written plainly.
func validPort(s string) bool {
	n, err := strconv.ParseUint(s, 10, 16)
	return err == nil && n > 0 && strconv.FormatUint(n, 10) == s
}

// The values of RouteConfig.FromTailnet.
const (
	fromTailnetDevice = "device"  // the device's owner is signed in
	fromTailnetSignIn = "sign_in" // the identity provider's sign-in is still required
)

// Device is a tailnet peer as the control server describes it.
type Device struct {
	// NodeID is the node's ID at the control server, and Name its name.
	NodeID, Name string
	// UserID is the ID of the Headscale user who owns the device; "" for a tagged device,
	// which belongs to no person.
	UserID string
	// Tags are the device's tags; a tagged device has no user.
	Tags []string
	// KeyExpiry is when the device's key expires; zero when it does not.
	KeyExpiry time.Time
}

// WhoIs tells which device a connection on the tailnet listener comes from, given the
// connection's remote address. It returns an error wrapping ErrUnknownDevice when the control
// server knows no device there (it was removed, or never was).
type WhoIs func(ctx context.Context, remoteAddr string) (Device, error)

// ErrUnknownDevice says that no device of the tailnet has the address asked about.
var ErrUnknownDevice = errors.New("no tailnet device has this address")

// deviceCache remembers what WhoIs said about each peer address for a while, so that a request
// on the tailnet listener costs a map lookup, as a cookie session's does. An answer that is
// not a device is never kept: the next request asks again.
type deviceCache struct {
	whois  WhoIs
	ttl    time.Duration
	now    func() time.Time
	issuer string // the control server's URL: the Issuer of every device's session

	mu      sync.RWMutex
	entries map[string]*deviceEntry // by the peer's IP address
}

// deviceEntry is one device as WhoIs described it, with the session that stands for it.
type deviceEntry struct {
	device Device
	// session is the identity the device proves, for the parts of headgate that take a
	// session: never stored, never sealed into a cookie.
	session *session.Session
	asked   time.Time
	// headplaneLinked is set once the owner's Headplane account is known to be linked.
	headplaneLinked atomic.Bool
}

// maxDevices is the size past which a new entry first drops every expired one, so that the
// cache holds about the peers seen within one TTL, not every peer ever seen.
const maxDevices = 4096

func newDeviceCache(whois WhoIs, ttl time.Duration, now func() time.Time, issuer string) *deviceCache {
	return &deviceCache{whois: whois, ttl: ttl, now: now, issuer: issuer, entries: make(map[string]*deviceEntry)}
}

// get returns the device at remoteAddr (host:port), asking WhoIs when no answer younger than
// the TTL is kept.
func (c *deviceCache) get(ctx context.Context, remoteAddr string) (*deviceEntry, error) {
	ip, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return nil, fmt.Errorf("tailnet peer address %q: %w", remoteAddr, err)
	}
	now := c.now()
	c.mu.RLock()
	e := c.entries[ip]
	c.mu.RUnlock()
	if e != nil && now.Sub(e.asked) < c.ttl {
		return e, nil
	}
	d, err := c.whois(ctx, remoteAddr)
	if err != nil {
		c.mu.Lock()
		delete(c.entries, ip)
		c.mu.Unlock()
		return nil, err
	}
	e = &deviceEntry{device: d, asked: now, session: &session.Session{
		// Unique per device and owner, so that what is kept per session (identity assertions)
		// is kept per device, and never the same as a sign-in's random ID.
		ID:      "tailnet:" + d.NodeID + ":" + d.UserID,
		Issuer:  c.issuer,
		Subject: "device:" + d.NodeID,
		Name:    d.Name,
	}}
	c.mu.Lock()
	if len(c.entries) >= maxDevices {
		for k, old := range c.entries {
			if now.Sub(old.asked) >= c.ttl {
				delete(c.entries, k)
			}
		}
	}
	c.entries[ip] = e
	c.mu.Unlock()
	return e, nil
}

// tailnetHandler serves the tailnet listener: the same routes as the ordinary listener, each
// request signed in by its device (see authenticateDevice) or, on a route that still requires
// the identity provider, sent to the public URL to sign in there. It never reads or sets a
// session cookie, so the two ways of signing in never mix.
type tailnetHandler struct {
	g       *Gateway
	mux     *http.ServeMux
	devices *deviceCache

	// linked holds the Headscale user IDs whose Headplane account headgate has linked, once per
	// user and process (headplane.link_at_sign_in).
	linkedMu sync.Mutex
	linked   map[string]bool
}

// TailnetHandler returns the handler for headgate's tailnet listener; whois names the device
// behind a connection.
func (g *Gateway) TailnetHandler(whois WhoIs) http.Handler {
	return g.newTailnetHandler(whois, g.cfg.Tailnet.IdentityTTL, g.cfg.Tailnet.ControlURL)
}

// newTailnetHandler returns the tailnet listener's handler, reusing what whois says about a
// peer for ttl; controlURL is the Issuer of the devices' sessions.
func (g *Gateway) newTailnetHandler(whois WhoIs, ttl time.Duration, controlURL string) *tailnetHandler {
	h := &tailnetHandler{
		g:       g,
		devices: newDeviceCache(whois, ttl, g.timing.Now, controlURL),
		linked:  make(map[string]bool),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", g.servePing)
	mux.HandleFunc("GET /ready", g.serveReady)
	mux.HandleFunc("GET /oauth2/sign_out", h.serveSignOut)
	mux.HandleFunc("POST /oauth2/sign_out", h.serveSignOut)
	// Sign-in, forward auth and the rest of headgate's own paths are the public listener's.
	mux.HandleFunc("/oauth2/", h.servePublicOnly)
	for _, p := range g.signOutPatterns() {
		mux.HandleFunc(p, h.serveSignOut)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { g.proxyAdmitted(w, r, h) })
	h.mux = mux
	return h
}

func (h *tailnetHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.g.cfg.AccessLog {
		h.g.serveLogged(w, r, h.mux)
		return
	}
	h.g.serve(w, r, h.mux)
}

// deviceEnough reports whether the device's owner may use rt, and every route in also,
// without signing in at the identity provider.
func deviceEnough(rt *route, also []*route) bool {
	for _, r := range also {
		if !r.deviceEnough {
			return false
		}
	}
	return rt.deviceEnough
}

// publicURL is r's path and query at headgate's public URL, where the identity provider's
// sign-in happens.
func (h *tailnetHandler) publicURL(r *http.Request) string {
	return h.g.origin + r.URL.RequestURI()
}

// sendToSignIn answers a request for a route that requires the identity provider's sign-in:
// the same page at the public URL, where the browser signs in as anywhere else. A page load
// is redirected there; Headplane's data requests reload the tab there; anything else is told
// where to go.
func (h *tailnetHandler) sendToSignIn(w http.ResponseWriter, r *http.Request) {
	h.g.metrics.denied[authSignInRequired].Inc()
	target := h.publicURL(r)
	if page, ok := h.g.dataRequest(r); ok {
		h.g.remixRedirect(w, r, h.g.safeRedirect(page)) // a path: at the public URL
		return
	}
	if isNavigation(r) {
		closeUnreadBody(w, r)
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	writePage(w, r, page{Status: http.StatusUnauthorized, Title: "Sign-in required",
		Message: "This page needs a sign-in with your identity provider, which the tailnet address does not offer. Open it at headgate's public address.",
	}.withAction("Open and sign in", target))
}

// proveDevice finds who the device at remoteAddr signs in: the control server's word on the
// peer (see WhoIs), then the device owner's Headscale user, resolved by ID. A device the
// control server does not know, a tagged one, one whose key expired and one whose owner
// Headscale no longer lists are refused; with authOK, the principal's link is the owner's.
func (h *tailnetHandler) proveDevice(ctx context.Context, remoteAddr string) (*deviceEntry, principal, authResult, error) {
	e, err := h.devices.get(ctx, remoteAddr)
	switch {
	case errors.Is(err, ErrUnknownDevice):
		return nil, principal{}, authDeviceUnknown, err
	case err != nil:
		return nil, principal{}, authDeviceUnavailable, err
	}
	p := principal{session: e.session, device: &e.device}
	switch d := &e.device; {
	case d.UserID == "" || len(d.Tags) > 0:
		return e, p, authDeviceTagged, nil
	case !d.KeyExpiry.IsZero() && !h.g.timing.Now().Before(d.KeyExpiry):
		return e, p, authDeviceExpired, nil
	}
	if p.link, err = h.g.links.ResolveUser(ctx, e.device.UserID); err != nil {
		return e, p, authUnavailable, err
	}
	if !p.link.Linked() {
		// The control server names a user Headscale's API does not list: deleted since.
		return e, p, authUnlinked, nil
	}
	return e, p, authOK, nil
}

// authenticateDevice proves the identity of a request on the tailnet listener from the device
// that sent it (see proveDevice); the owner must satisfy rt's rules and those of every route in
// also, as a signed-in person must.
func (h *tailnetHandler) authenticateDevice(r *http.Request, rt *route, also []*route) (principal, authResult, error) {
	e, p, res, err := h.proveDevice(r.Context(), r.RemoteAddr)
	if res != authOK {
		return p, res, err
	}
	if h.g.groups != nil {
		p.headscaleGroups = h.g.groups.Groups(p.link.UserID)
	}
	switch {
	case p.link.NameShared():
		return p, authNameShared, nil
	case unsendable(p.session, p.link) != "":
		return p, authBadIdentity, nil
	case !allowed(p, rt, also):
		return p, authNotAllowed, nil
	}
	h.linkHeadplane(r.Context(), e, p)
	return p, authOK, nil
}

// errDeviceGone says that a stream's device no longer signs its owner in.
var errDeviceGone = errors.New("the tailnet device no longer signs its owner in")

// recheck returns the check of the streams of a request that device, at remoteAddr, signed
// in: it stands while proveDevice still signs in the same device, of the same owner, at that
// address. It answers from the device cache, so the control server is asked once per
// IdentityTTL at most; what cannot be asked now fails soft (session.ErrUnavailable), as a
// store that cannot answer does.
func (h *tailnetHandler) recheck(remoteAddr string, device Device) func(context.Context) error {
	return func(ctx context.Context) error {
		_, p, res, err := h.proveDevice(ctx, remoteAddr)
		switch {
		case res == authDeviceUnavailable || res == authUnavailable:
			return fmt.Errorf("%w: %w", session.ErrUnavailable, err)
		case res != authOK || p.device.NodeID != device.NodeID || p.device.UserID != device.UserID:
			return errDeviceGone
		}
		return nil
	}
}

// linkHeadplane links the device owner's Headplane account to their Headscale user the first
// time this process lets them in, as a sign-in does (see linkAtSignIn). A device entry that
// has seen it done answers without the lock.
func (h *tailnetHandler) linkHeadplane(ctx context.Context, e *deviceEntry, p principal) {
	if !h.g.hpLinkAtSignIn || e.headplaneLinked.Load() {
		return
	}
	defer e.headplaneLinked.Store(true)
	h.linkedMu.Lock()
	done := h.linked[p.link.UserID]
	if !done {
		if len(h.linked) >= maxDevices {
			clear(h.linked)
		}
		h.linked[p.link.UserID] = true
	}
	h.linkedMu.Unlock()
	if !done {
		h.g.linkAtSignIn(ctx, p.session, p.link)
	}
}

// refuse answers a request on the tailnet listener that authenticateDevice did not let in
// (res is not authOK): a page that names the device and says what to do, or, for a data
// request from Headplane, a reload of the tab onto that page.
func (h *tailnetHandler) refuse(w http.ResponseWriter, r *http.Request, p principal, res authResult, err error, rt *route) {
	g := h.g
	g.metrics.denied[res].Inc()
	if page, ok := g.dataRequest(r); ok && res != authUnavailable && res != authDeviceUnavailable {
		// The page itself, loaded as a document, is refused with the same page as below.
		g.remixRedirect(w, r, tailnetOrigin(r)+g.safeRedirect(page))
		return
	}
	signIn := h.publicURL(r)
	name := ""
	if p.device != nil {
		name = " (" + p.device.Name + ")"
	}
	switch res {
	case authDeviceUnknown:
		g.fail(w, r, page{Status: http.StatusForbidden, Title: "Unknown device",
			Message: "The tailnet's control server does not know the device this request came from: it may have been removed. You can still sign in at headgate's public address.",
		}.withAction("Sign in", signIn), err)
	case authDeviceUnavailable:
		g.fail(w, r, page{Status: http.StatusServiceUnavailable, Title: "Tailnet unavailable",
			Message: "headgate could not ask the tailnet which device this request came from. " + tryAgainLater,
		}.withAction("Try again", tailnetOrigin(r)+r.URL.RequestURI()), err)
	case authDeviceTagged:
		g.fail(w, r, page{Status: http.StatusForbidden, Title: "Tagged device",
			Message: "This device" + name + " is tagged, so it belongs to no person, and headgate lets in people only. Use a device of your own, or sign in at headgate's public address.",
		}.withAction("Sign in", signIn), fmt.Errorf("tailnet device %s is tagged %q", p.device.NodeID, p.device.Tags))
	case authDeviceExpired:
		g.fail(w, r, page{Status: http.StatusForbidden, Title: "Device key expired",
			Message: "The key of this device" + name + " has expired. Log the device in to the tailnet again (tailscale up), then reload this page.",
		}.withAction("Sign in instead", signIn), fmt.Errorf("tailnet device %s: key expired at %s", p.device.NodeID, p.device.KeyExpiry.UTC().Format(time.RFC3339)))
	case authUnlinked:
		g.fail(w, r, page{Status: http.StatusForbidden, Title: "No Headscale user",
			Message: "This device" + name + " belongs to a Headscale user who no longer exists. Ask an administrator.",
		}, fmt.Errorf("tailnet device %s: headscale user %s: %s", p.device.NodeID, p.device.UserID, p.link.Reason))
	case authNameShared:
		g.fail(w, r, nameSharedPage("", p.link), errNameShared(p.link))
	case authBadIdentity:
		g.fail(w, r, pageBadIdentity, errBadIdentity(p.session, p.link))
	case authUnavailable:
		g.fail(w, r, pageHeadscaleDown.withAction("Try again", tailnetOrigin(r)+r.URL.RequestURI()), err)
	case authNotAllowed:
		g.fail(w, r, notAllowedPage("", rt.access.lacks()),
			fmt.Errorf("not allowed on route %s: tailnet device %s, headscale user %q", rt.name, p.device.NodeID, p.link.UserName))
	}
}

// serveSignOut answers a sign-out on the tailnet listener. A device's owner has no session to
// end: the page says so (Headplane's Logout, a data request, reloads the tab onto it).
func (h *tailnetHandler) serveSignOut(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.g.dataRequest(r); ok || r.Method != http.MethodGet {
		h.g.remixRedirect(w, r, tailnetOrigin(r)+"/oauth2/sign_out")
		return
	}
	writePage(w, r, page{Status: http.StatusOK, Title: "Signed in by this device",
		Message: "Over the tailnet, headgate signs you in as the owner of the device you use: there is no session to end. To stop, leave the tailnet on this device, or ask an administrator to remove it.",
	}.withAction("Back", tailnetOrigin(r)+"/"))
}

// tailnetOrigin is the origin a request on the tailnet listener was sent to: plain HTTP, and
// the host the browser asked for (a MagicDNS name or an address), which is where its pages go
// on. A Host header that is not a plain host and port is not echoed.
func tailnetOrigin(r *http.Request) string {
	host := r.Host
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(".-:[]", c) >= 0) {
			host = ""
			break
		}
	}
	if host == "" {
		host = r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()
	}
	return "http://" + host
}

// servePublicOnly answers a request for one of headgate's own paths, which the tailnet
// listener does not serve: sign-in and forward auth are at the public URL.
func (h *tailnetHandler) servePublicOnly(w http.ResponseWriter, r *http.Request) {
	writePage(w, r, page{Status: http.StatusNotFound, Title: "Not here",
		Message: "headgate's sign-in and its other pages are at its public address, not on the tailnet.",
	}.withAction("Go there", h.publicURL(r)))
}
