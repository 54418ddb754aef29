package testbed

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
	// Name is the program's, nginx or caddy.
	Name string

	log  string // the log file in Dir that Log reads
	proc *process
}

// startFrontProxy runs bin with args and env from dir, its output in dir/output.log, and waits
// until it accepts connections on 127.0.0.1:port. log names the file in dir whose tail
// failure messages show. On failure it stops the process.
func startFrontProxy(ctx context.Context, name, dir string, port int, log string, env []string, bin string, args ...string) (*FrontProxy, error) {
	p, err := startProcessEnv(name, dir, filepath.Join(dir, "output.log"), env, bin, args...)
	if err != nil {
		return nil, err
	}
	f := &FrontProxy{URL: "http://" + HostPort(port), Dir: dir, Name: name, log: log, proc: p}
	if err := p.waitTCP(ctx, HostPort(port), 10*time.Second, nil); err != nil {
		p.stop()
		return nil, fmt.Errorf("start %s: %w\n--- %s ---\n%s", name, err, f.LogPath(), f.Log(20))
	}
	return f, nil
}

// LogPath is the file of the proxy's log: nginx's error.log, or Caddy's output.
func (f *FrontProxy) LogPath() string {
	return filepath.Join(f.Dir, f.log)
}

// Log returns the last n lines of the proxy's log, for failure messages.
func (f *FrontProxy) Log(lines int) string {
	return tailFile(f.LogPath(), lines)
}

// Close ends the proxy (SIGTERM, then SIGKILL after five seconds) and removes its directory
// unless keep is set.
func (f *FrontProxy) Close(keep bool) {
	f.proc.stop()
	if !keep {
		os.RemoveAll(f.Dir)
	}
}
