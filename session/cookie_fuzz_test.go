package session

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzOpenCookie feeds arbitrary cookie values to Open: it must never panic, and nothing but a
// cookie this package sealed may open.
func FuzzOpenCookie(f *testing.F) {
	c, err := NewCookies(defaulted(Config{Secret: Secrets{strings.Repeat("f", 32)}}), false)
	if err != nil {
		f.Fatal(err)
	}
	s := &Session{ID: "fuzz-session-id", Issuer: "https://idp.example.com", Subject: "alice", Email: "alice@example.com",
		IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	w := &headerWriter{h: http.Header{}}
	if err := c.Seal(w, s); err != nil {
		f.Fatal(err)
	}
	sealed := (&http.Response{Header: w.h}).Cookies()[0].Value
	f.Add(sealed)
	f.Add(sealed[:len(sealed)/2])
	f.Add("")
	f.Add("MTcwMDAwMDAwMHx8")
	f.Add(strings.Repeat("A", 5000))
	f.Fuzz(func(t *testing.T, value string) {
		r := &http.Request{Header: http.Header{"Cookie": {"_headgate=" + value}}}
		got, err := c.Open(r)
		if err != nil {
			return
		}
		// The seeds were sealed by this same code (in the fuzzing coordinator, with the same
		// secret): only such a value may open, and only to the session that was sealed.
		if got.ID != s.ID || got.Subject != s.Subject || got.Email != s.Email {
			t.Fatalf("a cookie headgate did not seal opened: %q -> %+v", value, got)
		}
	})
}

// headerWriter is the smallest http.ResponseWriter that keeps headers.
type headerWriter struct{ h http.Header }

func (w *headerWriter) Header() http.Header         { return w.h }
func (w *headerWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *headerWriter) WriteHeader(int)             {}
