package session

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestCookieValues(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"none", nil, nil},
		{"one", []string{"_headgate=abc"}, []string{"abc"}},
		{"among others", []string{"a=1; _headgate=abc; b=2"}, []string{"abc"}},
		{"duplicates in order", []string{"_headgate=one; x=y; _headgate=two"}, []string{"one", "two"}},
		{"across header lines", []string{"_headgate=one", "a=b;_headgate=two"}, []string{"one", "two"}},
		{"quoted", []string{`_headgate="abc"`}, []string{"abc"}},
		{"empty value", []string{"_headgate="}, []string{""}},
		{"spaces and tabs", []string{" a=1 ;\t_headgate=abc\t; "}, []string{"abc"}},
		{"prefix of another name", []string{"_headgate_login_x=1; _headgate2=2; x_headgate=3"}, nil},
		{"no equals sign", []string{"_headgate"}, nil},
		{"value with equals signs", []string{"_headgate=YWJj=="}, []string{"YWJj=="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Cookie": tt.lines}
			got := cookieValues(nil, h, "_headgate")
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			// Where net/http accepts the cookies, it must find the same values.
			var std []string
			for _, c := range (&http.Request{Header: h}).CookiesNamed("_headgate") {
				std = append(std, c.Value)
			}
			if strings.Join(std, "|") != strings.Join(got, "|") {
				t.Errorf("got %q, net/http finds %q", got, std)
			}
		})
	}
}

func TestStripOwn(t *testing.T) {
	for _, secure := range []bool{false, true} {
		c, err := NewCookies(defaulted(Config{Secret: Secrets{strings.Repeat("s", 32)}}), secure)
		if err != nil {
			t.Fatal(err)
		}
		testStripOwn(t, c)
	}
}

func testStripOwn(t *testing.T, c *Cookies) {
	tests := []struct {
		in   []string
		want []string // nil: no Cookie header left
	}{
		{[]string{"theme=dark; _headgate=abc; lang=en"}, []string{"theme=dark; lang=en"}},
		{[]string{"_headgate=abc", "a=1;_headgate_login_xyz=2"}, []string{"a=1"}},
		{[]string{"_headgate=abc; _headgate_login_q=1"}, nil},
		{[]string{"_headgatex=1; a=2"}, []string{"_headgatex=1; a=2"}},
		{[]string{"__Host-_headgate=abc; a=1; __Host-_headgate_login_q=2"}, []string{"a=1"}},
		{[]string{"__Host-_headgatex=1; __Host-other=2"}, []string{"__Host-_headgatex=1; __Host-other=2"}},
	}
	for _, tt := range tests {
		h := http.Header{"Cookie": append([]string(nil), tt.in...)}
		c.StripOwn(h)
		if got := h["Cookie"]; !slices.Equal(got, tt.want) {
			t.Errorf("StripOwn(%q) with %s: got %q, want %q", tt.in, c.name, got, tt.want)
		}
	}
}
