package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// FrontProxy is a reverse proxy run in front of headgate for a forward-auth recipe (nginx,
// Caddy), from a directory of its own that holds its configuration and logs.
type FrontProxy struct {
	// URL is http://127.0.0.1:PORT.
	URL string
	// Dir holds the proxy's configuration and logs.
	Dir string

	name, log string // the program's name, and its log file in Dir
	proc      *process
}

// startFrontProxy runs bin with args and env from dir, its output in dir/output.log, and waits
// until it accepts connections on 127.0.0.1:port. log names the file in dir whose tail
// failure messages show. On failure it stops the process.
func startFrontProxy(ctx context.Context, name, dir string, port int, log string, env []string, bin string, args ...string) (*FrontProxy, error) {
	p, err := startProcessEnv(name, dir, filepath.Join(dir, "output.log"), env, bin, args...)
	if err != nil {
		return nil, err
	}
	f := &FrontProxy{URL: "http://" + hostPort(port), Dir: dir, name: name, log: log, proc: p}
	if err := p.waitTCP(ctx, hostPort(port), 10*time.Second, nil); err != nil {
		p.stop()
		return nil, fmt.Errorf("start %s: %w\n--- %s ---\n%s", name, err, filepath.Join(dir, log), f.Log(20))
	}
	return f, nil
}

// Log returns the last n lines of the proxy's log, for failure messages.
func (f *FrontProxy) Log(lines int) string {
	return tailFile(filepath.Join(f.Dir, f.log), lines)
}

// Close ends the proxy (SIGTERM, then SIGKILL after five seconds) and removes its directory
// unless keep is set.
func (f *FrontProxy) Close(keep bool) {
	f.proc.stop()
	if !keep {
		os.RemoveAll(f.Dir)
	}
}
