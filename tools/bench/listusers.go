package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"time"
)

// listTiming is how long the stack's Headscale took to answer GET /api/v1/user at one number
// of users: the full listing headgate makes to resolve a link it has not cached, and a lookup
// by email (?email=), the narrowest query Headscale's API offers.
type listTiming struct {
	users int
	full  apiTiming
	email apiTiming
}

// apiTiming is the median of five calls.
type apiTiming struct {
	median time.Duration
	bytes  int
	found  int
	// failure is Headscale's answer when the call failed.
	failure string
}

// timeUserListing grows the stack's Headscale to 1,000 users, then 10,000, 20,000, 50,000 and
// 100,000, up to upTo, and times the calls at each size. Headscale's API creates users one at
// a time, too slowly for 100,000, so the users are inserted into its SQLite database in bulk,
// as OIDC users; Headscale reads users from the database on every listing.
func timeUserListing(ctx context.Context, env *environment, upTo int, logf func(string, ...any)) ([]listTiming, error) {
	sqlite, err := exec.LookPath("sqlite3")
	if err != nil {
		return nil, fmt.Errorf("time headscale's user listing: the sqlite3 command is not installed (apt-get install -y sqlite3)")
	}
	db := env.stack.HeadscaleDB()
	var timings []listTiming
	have := 0
	for _, size := range []int{1000, 10_000, 20_000, 50_000, 100_000, upTo} {
		if size > upTo || size <= have {
			continue
		}
		stmt := fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT %d UNION ALL SELECT i+1 FROM n WHERE i < %d)
INSERT INTO users (created_at, updated_at, name, display_name, email, provider_identifier, provider)
SELECT datetime('now'), datetime('now'), 'bench' || i, 'Bench User ' || i, 'bench' || i || '@example.com',
  '%s/' || i, 'oidc' FROM n;`, have+1, size, env.stack.Issuer)
		if out, err := exec.CommandContext(ctx, sqlite, db, stmt).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("insert headscale users: %w: %s", err, bytes.TrimSpace(out))
		}
		have = size
		t := listTiming{users: size}
		if t.full, err = timeAPI(ctx, env, ""); err != nil {
			return nil, err
		}
		// The user in the middle, so that neither end of a table scan flatters the lookup.
		if t.email, err = timeAPI(ctx, env, url.Values{"email": {fmt.Sprintf("bench%d@example.com", size/2)}}.Encode()); err != nil {
			return nil, err
		}
		logf("headscale with %d users: full listing %s, lookup by email %s", size, t.full, t.email)
		timings = append(timings, t)
	}
	return timings, nil
}

func (a apiTiming) String() string {
	if a.failure != "" {
		return fmt.Sprintf("fails in %s (%s)", a.median.Round(time.Millisecond), a.failure)
	}
	return fmt.Sprintf("%s (%d users, %.1f MiB)", a.median.Round(time.Millisecond), a.found, float64(a.bytes)/(1<<20))
}

// timeAPI calls GET /api/v1/user?query five times and keeps the median time to the last byte.
func timeAPI(ctx context.Context, env *environment, query string) (apiTiming, error) {
	var a apiTiming
	var took []time.Duration
	for range 5 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.stack.HeadscaleURL+"/api/v1/user?"+query, nil)
		if err != nil {
			return a, err
		}
		req.Header.Set("Authorization", "Bearer "+env.stack.APIKey)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return a, fmt.Errorf("list headscale users: %w", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took = append(took, time.Since(start))
		if err != nil {
			return a, fmt.Errorf("list headscale users: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			// Headscale's API reports gRPC errors as {"code": ..., "message": ...}.
			var e struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(body, &e) != nil || e.Message == "" {
				e.Message = string(bytes.TrimSpace(body[:min(len(body), 200)]))
			}
			a.failure = fmt.Sprintf("%d, %s", resp.StatusCode, e.Message)
			continue
		}
		var list struct {
			Users []json.RawMessage `json:"users"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return a, fmt.Errorf("decode headscale users: %w", err)
		}
		a.found, a.bytes = len(list.Users), len(body)
	}
	slices.Sort(took)
	a.median = took[len(took)/2]
	return a, nil
}

func printListTimings(w io.Writer, timings []listTiming) {
	fmt.Fprintf(w, "The stack's Headscale (SQLite) answering GET /api/v1/user, median of 5:\n\n")
	rows := [][]string{{"users", "full listing", "?email= lookup"}}
	for _, t := range timings {
		rows = append(rows, []string{fmt.Sprint(t.users), t.full.String(), t.email.String()})
	}
	printTable(w, rows)
}
