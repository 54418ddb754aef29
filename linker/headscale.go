package linker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
)

// User is a Headscale user as GET /api/v1/user describes it. Fields the linker does not use
// are not decoded.
type User struct {
	// ID is Headscale's numeric user id, which its API sends as a string.
	ID          string `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"displayName"`
	Email       string `json:"email"`
	// ProviderID is set for users Headscale created from an OIDC sign-in; see ProviderID.
	ProviderID string `json:"providerId"`
	// Provider is "oidc" for those users and "" for users made with the CLI or API.
	Provider string `json:"provider"`
}

// maxListBytes caps the user list read from Headscale. 10,000 users take about 2.3 MB, so
// this allows well over 250,000 while bounding what a broken server can make us buffer.
const maxListBytes = 64 << 20

// errTooLarge reports a user list over maxListBytes.
var errTooLarge = fmt.Errorf("user list exceeds %d MiB", maxListBytes>>20)

// Headscale is a small client of Headscale's HTTP API (/api/v1), limited to what linking needs.
// It speaks plain HTTP and JSON so it keeps working across Headscale versions whose Go packages
// and gRPC surface change. It is safe for concurrent use.
type Headscale struct {
	usersURL      string
	policyURL     string
	versionURL    string
	key           string // the API key; never put into an error
	timeout       time.Duration
	listMaxAge    time.Duration
	policyRefresh time.Duration
	client        *http.Client
}

// NewHeadscale returns a client for the Headscale API described by cfg, which should have passed
// SetDefaults and Validate with its api_key_file already read into APIKey. A nil
// client means a client of its own; either way each call is bounded by cfg.Timeout.
func NewHeadscale(cfg HeadscaleConfig, client *http.Client) *Headscale {
	if client == nil {
		client = &http.Client{Timeout: cfg.Timeout}
	}
	base := strings.TrimSuffix(cfg.URL, "/")
	return &Headscale{
		usersURL:      base + "/api/v1/user",
		policyURL:     base + "/api/v1/policy",
		versionURL:    base + "/version",
		key:           cfg.APIKey,
		timeout:       cfg.Timeout,
		listMaxAge:    cfg.ListMaxAge,
		policyRefresh: cfg.PolicyRefresh,
		client:        client,
	}
}

// ErrListingTooLarge means Headscale could not send its whole user list: its REST gateway
// relays the answer of its own gRPC server, which refuses messages over 4 MiB (about 39,000
// users in 0.29). Single-user lookups by email or name still work then.
var ErrListingTooLarge = errors.New("headscale user list too large to send")

// ErrAPIKeyRefused marks an answer of 401 or 403 from Headscale's API: it refused the API key
// (unknown, expired or revoked).
var ErrAPIKeyRefused = errors.New("check the API key")

// ListUsers returns every Headscale user. A non-2xx answer is an error carrying the status, a
// body over 64 MiB or not a user list is an error, and the whole call, body included, takes at
// most the configured timeout. Errors never contain the API key.
func (h *Headscale) ListUsers(ctx context.Context) ([]User, error) {
	users, err := h.getUsers(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list headscale users: %w", err)
	}
	return users, nil
}

// FindUsers returns the users whose field ("email", "name" or "id") equals value exactly, as
// Headscale compares it (case-sensitively). It is one API call, and does not grow with the
// number of users.
func (h *Headscale) FindUsers(ctx context.Context, field, value string) ([]User, error) {
	users, err := h.getUsers(ctx, url.Values{field: {value}}.Encode())
	if err != nil {
		return nil, fmt.Errorf("find headscale users by %s: %w", field, err)
	}
	return users, nil
}

func (h *Headscale) getUsers(ctx context.Context, query string) ([]User, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	u := h.usersURL
	if query != "" {
		u += "?" + query
	}
	resp, err := h.get(ctx, u)
	if err != nil {
		return nil, err
	}
	defer drainClose(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		err := h.statusError(resp, errorBody(resp))
		if resp.StatusCode == http.StatusTooManyRequests && strings.Contains(err.Error(), "larger than max") {
			return nil, fmt.Errorf("%w: %w", ErrListingTooLarge, err)
		}
		return nil, err
	}
	users, err := decodeUsers(resp.Body)
	if errors.Is(err, errTooLarge) {
		return nil, fmt.Errorf("%w: %w", ErrListingTooLarge, err)
	}
	return users, err
}

// maxPolicyBytes caps the policy answer read from Headscale. Its REST gateway relays the answer
// of its gRPC server, which sends at most 4 MiB; twice that leaves room for the policy text's
// escaping in JSON.
const maxPolicyBytes = 8 << 20

// Headscale's messages for "there is no policy", which it answers with status 500: in database
// mode before a policy was ever set, and in file mode without a policy path, where it tries to
// open "". Headscale itself runs with no policy in both cases.
const (
	noPolicyInDatabase = "acl policy not found"
	noPolicyFile       = `reading policy from path "": `
)

// Policy returns Headscale's ACL policy as Headscale holds it: HuJSON text, in database mode the
// latest one set, in file mode the file's contents. When Headscale has no policy, Policy returns
// an empty one and no error. Any other non-2xx answer is an error carrying the status, as is a
// body over 8 MiB or without a policy, and the whole call takes at most the configured timeout.
// Errors never contain the API key.
func (h *Headscale) Policy(ctx context.Context) ([]byte, error) {
	policy, err := h.getPolicy(ctx)
	if err != nil {
		return nil, fmt.Errorf("get headscale policy: %w", err)
	}
	return policy, nil
}

func (h *Headscale) getPolicy(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	resp, err := h.get(ctx, h.policyURL)
	if err != nil {
		return nil, err
	}
	defer drainClose(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body := errorBody(resp)
		if resp.StatusCode == http.StatusInternalServerError && saysNoPolicy(body) {
			return nil, nil
		}
		return nil, h.statusError(resp, body)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicyBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPolicyBytes {
		return nil, fmt.Errorf("policy exceeds %d MiB", maxPolicyBytes>>20)
	}
	// Headscale always sends the "policy" string, empty when the policy set is empty, so a body
	// without one (another service behind the URL, say) is an error rather than no policy.
	var body struct {
		Policy *string `json:"policy"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, fmt.Errorf("decode policy: %w", err)
	}
	if body.Policy == nil {
		return nil, errors.New("decode policy: no \"policy\" string")
	}
	return []byte(*body.Policy), nil
}

// Version returns the version Headscale reports at /version, which needs no API key: a
// release such as "v0.29.3", or "dev" for a build without one. The call takes at most the
// configured timeout.
func (h *Headscale) Version(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.versionURL, nil)
	if err != nil {
		return "", fmt.Errorf("get headscale version: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("get headscale version: %w", err)
	}
	defer drainClose(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("get headscale version: %w", h.statusError(resp, errorBody(resp)))
	}
	var body struct {
		Version string `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body); err != nil || body.Version == "" {
		return "", errors.New("get headscale version: the answer names no version")
	}
	return body.Version, nil
}

// saysNoPolicy reports whether body, the start of an error answer of Headscale's, is its JSON
// error saying that it has no policy.
func saysNoPolicy(body []byte) bool {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) != nil {
		return false
	}
	return strings.HasSuffix(e.Message, noPolicyInDatabase) || strings.HasPrefix(e.Message, noPolicyFile)
}

// get asks Headscale's API for u with the API key, answer in JSON. The caller closes the body
// with drainClose, and reads it before ctx ends.
func (h *Headscale) get(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+h.key)
	req.Header.Set("Accept", "application/json")
	return h.client.Do(req)
}

// decodeUsers reads the body of GET /api/v1/user. Headscale always sends the "users" array, so
// a body without one (another service behind the URL, say) is an error rather than no users.
func decodeUsers(r io.Reader) ([]User, error) {
	var body struct {
		Users []User `json:"users"`
	}
	if err := json.NewDecoder(&cappedReader{r: r, n: maxListBytes}).Decode(&body); err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, err
		}
		return nil, fmt.Errorf("decode user list: %w", err)
	}
	if body.Users == nil {
		return nil, errors.New("decode user list: no \"users\" array")
	}
	return body.Users, nil
}

// errorBody returns the start of the body of a non-2xx answer, enough for statusError and to
// tell one error of Headscale's from another.
func errorBody(resp *http.Response) []byte {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	return b
}

// statusError describes a non-2xx answer by its status and the start of its body (from
// errorBody): Headscale answers 401 in plain text, and from 0.30 problem+json whose detail says
// what went wrong.
func (h *Headscale) statusError(resp *http.Response, body []byte) error {
	b := body[:min(len(body), 256)]
	detail := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, string(b))
	if h.key != "" {
		// Whatever sits in front of Headscale might echo the request.
		detail = strings.ReplaceAll(detail, h.key, "[api key]")
	}
	detail = strings.Join(strings.Fields(detail), " ")
	if detail != "" {
		detail = ": " + detail
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("headscale answered %s (%w)%s", resp.Status, ErrAPIKeyRefused, detail)
	}
	return fmt.Errorf("headscale answered %s%s", resp.Status, detail)
}

// drainClose reads a little of what is left of body so the connection can be reused, then
// closes it.
func drainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}

// cappedReader reads from r until n bytes have been read, then fails with errTooLarge instead
// of ending quietly, so a cut-off list is never taken for a complete one.
type cappedReader struct {
	r io.Reader
	n int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		// One byte more than the cap tells a body of exactly n bytes from a longer one.
		var one [1]byte
		if k, err := c.r.Read(one[:]); k > 0 {
			return 0, errTooLarge
		} else if err != nil {
			return 0, err
		}
		return 0, nil
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	k, err := c.r.Read(p)
	c.n -= int64(k)
	return k, err
}
