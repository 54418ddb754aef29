package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium package's binary; $HEADGATE_CHROMIUM overrides it.
const chromiumPath = "/usr/bin/chromium"

// BrowserTimeout bounds every wait of a Browser: a start, a page load, a selector, a URL.
const BrowserTimeout = 30 * time.Second

// Browser is a headless Chromium with a profile of its own, so its cookies are its own: a
// second person needs a second Browser. Its tabs share its cookies. Its methods take a tab's
// context (from NewTab) and bound every wait by 30 seconds; a failed wait names what it awaited
// and the URL the tab was at.
type Browser struct {
	// Dir holds the profile (--user-data-dir) and chromium.log; Close removes it.
	Dir string

	ctx         context.Context // Chromium's first tab; cancelling it ends Chromium
	cancel      context.CancelFunc
	cancelAlloc context.CancelFunc
	logFile     *os.File

	mu       sync.Mutex // guards problems and tabs
	problems []string
	tabs     int
}

// StartBrowser starts Chromium ($HEADGATE_CHROMIUM, else /usr/bin/chromium) headless, with a
// fresh profile, no sandbox, no GPU, no QUIC and no background traffic, and waits until it
// answers (about a second). It runs until Close or until ctx ends.
func StartBrowser(ctx context.Context) (*Browser, error) {
	return StartBrowserVia(ctx, "")
}

// StartBrowserVia is StartBrowser with every request but those for loopback sent through the
// HTTP proxy at proxyURL (such as a tailnet node's, see TailnetNode.ServeProxy); "" for none.
func StartBrowserVia(ctx context.Context, proxyURL string) (*Browser, error) {
	bin := chromiumPath
	if env := os.Getenv("HEADGATE_CHROMIUM"); env != "" {
		bin = env
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("start chromium: %w (install Debian's chromium package, or set HEADGATE_CHROMIUM)", err)
	}
	dir, err := os.MkdirTemp("", "headgate-chromium-")
	if err != nil {
		return nil, fmt.Errorf("start chromium: %w", err)
	}
	logFile, err := os.Create(filepath.Join(dir, "chromium.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start chromium: %w", err)
	}
	b := &Browser{Dir: dir, logFile: logFile}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.CombinedOutput(logFile),
	)
	if proxyURL != "" {
		opts = append(opts, chromedp.ProxyServer(proxyURL))
	} else {
		// Every peer is on 127.0.0.1: no proxy from the environment may come between.
		opts = append(opts, chromedp.Flag("no-proxy-server", true))
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	b.cancelAlloc = cancelAlloc
	b.ctx, b.cancel = chromedp.NewContext(allocCtx)

	// The first Run starts Chromium and binds it to the context it is given, so it cannot carry
	// a timeout of its own: it is bounded from outside.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(b.ctx) }()
	timer := time.NewTimer(BrowserTimeout)
	defer timer.Stop()
	select {
	case err = <-started:
	case <-timer.C:
		err = fmt.Errorf("no answer within %s", BrowserTimeout)
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("start chromium %s: %w\n--- last lines of chromium.log ---\n%s\n---", bin, err, tailFile(logFile.Name(), 20))
	}
	return b, nil
}

// Close ends Chromium and removes Dir. It is safe to call more than once.
func (b *Browser) Close() {
	if b.cancel != nil {
		// A graceful close, else a kill when it takes too long.
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		chromedp.Cancel(ctx)
		cancel()
		b.cancel()
	}
	if b.cancelAlloc != nil {
		b.cancelAlloc()
	}
	if b.logFile != nil {
		b.logFile.Close()
	}
	os.RemoveAll(b.Dir)
}

// Tail returns the last n lines of Chromium's own output, for failure messages.
func (b *Browser) Tail(n int) string {
	return tailFile(filepath.Join(b.Dir, "chromium.log"), n)
}

// NewTab opens a tab. Its context is the one to pass to the other methods; cancel closes the
// tab. The tab's console errors, uncaught exceptions, failed requests and responses of status
// 400 or more are recorded for ConsoleErrors from the start.
func (b *Browser) NewTab() (context.Context, context.CancelFunc, error) {
	b.mu.Lock()
	b.tabs++
	name := fmt.Sprintf("tab %d", b.tabs)
	b.mu.Unlock()
	requests := map[network.RequestID]string{} // only the listener's goroutine touches it
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithListener(func(ev any) {
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			requests[ev.RequestID] = ev.Request.Method + " " + WithoutQuery(ev.Request.URL)
		case *network.EventResponseReceived:
			if ev.Response.Status >= 400 {
				b.record("%s: %s answered %d", name, requests[ev.RequestID], ev.Response.Status)
			}
		case *network.EventLoadingFailed:
			if !ev.Canceled {
				b.record("%s: %s failed: %s", name, requests[ev.RequestID], ev.ErrorText)
			}
		}
	}))
	// As in StartBrowser, the first Run binds the tab to its context: bounded from outside.
	opened := make(chan error, 1)
	go func() { opened <- chromedp.Do(ctx) }()
	timer := time.NewTimer(BrowserTimeout)
	defer timer.Stop()
	select {
	case err := <-opened:
		if err != nil {
			cancel()
			return nil, nil, fmt.Errorf("open a chromium tab: %w", err)
		}
	case <-timer.C:
		cancel()
		return nil, nil, fmt.Errorf("open a chromium tab: no answer within %s", BrowserTimeout)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return // the tab is closed
			}
			// Network entries of the browser log repeat what the listener records.
			if (m.Type == chromedp.ConsoleError || m.IsException()) && m.Source != "network" {
				b.record("%s: console %s (%s)", name, m, WithoutQuery(m.URL))
			}
		}
	}()
	return ctx, cancel, nil
}

func (b *Browser) record(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, fmt.Sprintf(format, args...))
}

// ConsoleErrors returns what went wrong in the browser's tabs so far, oldest first, one line
// each ("tab 1: GET http://... answered 500", "tab 1: console error: ..."): console errors,
// uncaught exceptions, requests that failed (not those cancelled, as by leaving a page) and
// responses of status 400 or more. URLs are shown without their query, which may hold a code
// or a state.
func (b *Browser) ConsoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// URL returns the tab's current URL, query included, or a note of why it cannot be read.
func (b *Browser) URL(ctx context.Context) string {
	// ctx may be one whose deadline has passed: the note is for the message about that.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return fmt.Sprintf("(URL unreadable: %v)", err)
	}
	return u
}

// Run runs actions in the tab of ctx within BrowserTimeout; a failure names what and the URL.
func (b *Browser) Run(ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) error {
	_, err := runAction(b, ctx, what, chromedp.Steps(actions...))
	return err
}

// runAction is run for an action with a result.
func runAction[T any](b *Browser, ctx context.Context, what string, a chromedp.Action[T]) (T, error) {
	tctx, cancel := context.WithTimeout(ctx, BrowserTimeout)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		return v, b.failure(ctx, what, err)
	}
	return v, nil
}

func (b *Browser) failure(ctx context.Context, what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("not within %s: %w", BrowserTimeout, err)
	}
	return fmt.Errorf("%s: %w (the tab is at %s)", what, err, WithoutQuery(b.URL(ctx)))
}

// WithoutQuery returns raw without its query and fragment, which may hold a code or a state,
// for messages. A raw that is no absolute URL (a note, a data: URL) is returned as it is.
func WithoutQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return raw // a note, or a data: URL
	}
	return stripQuery(u)
}

// Navigate loads rawURL in the tab and waits for the page that the redirects end on to load.
func (b *Browser) Navigate(ctx context.Context, rawURL string) error {
	return b.Run(ctx, "navigate to "+rawURL, chromedp.Navigate(rawURL))
}

// WaitURL waits until the tab's URL starts with prefix and returns the URL.
func (b *Browser) WaitURL(ctx context.Context, prefix string) (string, error) {
	return b.WaitURLFunc(ctx, "a URL under "+prefix, func(u string) bool { return strings.HasPrefix(u, prefix) })
}

// WaitURLFunc waits until match accepts the tab's URL and returns the URL; what describes the
// awaited URL for the error.
func (b *Browser) WaitURLFunc(ctx context.Context, what string, match func(string) bool) (string, error) {
	var got string
	err := b.Poll(ctx, "wait for "+what, func(ctx context.Context) (bool, error) {
		u, err := chromedp.Run(ctx, chromedp.Location())
		got = u
		return err == nil && match(u), err
	})
	return got, err
}

// Poll calls check every 100 ms until it reports done, within BrowserTimeout. Errors of check
// (a page being replaced by the next) are retried; the last one is reported.
func (b *Browser) Poll(ctx context.Context, what string, check func(context.Context) (bool, error)) error {
	tctx, cancel := context.WithTimeout(ctx, BrowserTimeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(tctx, 5*time.Second)
		done, err := check(cctx)
		ccancel()
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-tctx.Done():
			if last == nil {
				last = tctx.Err()
			}
			return b.failure(ctx, what, fmt.Errorf("not within %s (last: %w)", BrowserTimeout, last))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Text waits until the first element matching the CSS selector is visible and returns its
// visible text. A page that replaces its nodes while they are read (as React does when it
// takes over a server-rendered page) is read again.
func (b *Browser) Text(ctx context.Context, selector string) (string, error) {
	var text string
	err := b.Poll(ctx, "read the text of "+selector, func(ctx context.Context) (bool, error) {
		var err error
		text, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(selector), chromedp.NodeVisible))
		return err == nil, err
	})
	return text, err
}

// WaitText waits until the first element matching the CSS selector shows text containing want
// (pages that render after loading) and returns its text.
func (b *Browser) WaitText(ctx context.Context, selector, want string) (string, error) {
	var text string
	err := b.Poll(ctx, fmt.Sprintf("%q in %s", want, selector), func(ctx context.Context) (bool, error) {
		var err error
		text, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(selector), chromedp.NodeVisible))
		return err == nil && strings.Contains(text, want), err
	})
	if err != nil && text != "" {
		err = fmt.Errorf("%w; its text: %q", err, text)
	}
	return text, err
}

// Click waits until the first element matching the CSS selector is visible and clicks it.
func (b *Browser) Click(ctx context.Context, selector string) error {
	return b.Run(ctx, "click "+selector, chromedp.Click(chromedp.CSS(selector)))
}

// Screenshot writes a PNG of the whole page to path.
func (b *Browser) Screenshot(ctx context.Context, path string) error {
	png, err := runAction(b, ctx, "take a screenshot", chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	return os.WriteFile(path, png, 0o644)
}

// The parts of Dex's password form (its password.html template).
const (
	dexLoginInput    = `input[name="login"]`
	dexPasswordInput = `input[name="password"]`
	dexSubmit        = `form button[type="submit"]`
	dexLoginError    = `#login-error`
)

// DexLogin fills Dex's password form in the tab, once the tab shows it, with email and password,
// submits it, and waits for the page that answers. It fails when Dex refuses the password (the
// tab then shows the form again, and DexLogin can be called again). Where the tab lands after
// a success is the caller's to check.
func (b *Browser) DexLogin(ctx context.Context, email, password string) error {
	what := "sign in " + email + " at dex"
	if err := b.Run(ctx, what+": wait for the password form", chromedp.WaitVisible(chromedp.CSS(dexPasswordInput))); err != nil {
		return err
	}
	// The form document is marked before the submit, so that only the answer to this submit
	// counts: a form shown after a refusal already holds an error box.
	if err := b.Run(ctx, what+": fill in and submit the form",
		chromedp.Clear(chromedp.CSS(dexLoginInput)),
		chromedp.SendKeys(chromedp.CSS(dexLoginInput), email),
		chromedp.Clear(chromedp.CSS(dexPasswordInput)),
		chromedp.SendKeys(chromedp.CSS(dexPasswordInput), password),
		chromedp.Evaluate[chromedp.Void](`window.headgateSubmitted = true`),
		chromedp.Click(chromedp.CSS(dexSubmit)),
	); err != nil {
		return err
	}
	// Dex answers a refused password with the form again, plus an error box.
	refused := false
	err := b.Poll(ctx, what+": wait for the answer to the form", func(ctx context.Context) (bool, error) {
		state, err := chromedp.Run(ctx, chromedp.Evaluate[string](
			`window.headgateSubmitted || document.readyState == "loading" ? "pending" : `+
				`document.querySelector("`+dexLoginError+`") ? "refused" : "left"`))
		if err != nil {
			return false, err
		}
		refused = state == "refused"
		return state != "pending", nil
	})
	if err != nil {
		return err
	}
	if refused {
		return fmt.Errorf("%s: dex refused the password", what)
	}
	return nil
}
