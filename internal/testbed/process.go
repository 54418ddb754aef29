package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a child process of the stack. It runs in its own process group so that stopping
// it also stops anything it started, and its output goes to a log file.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // the exit error; read only after done is closed
}

// startProcess starts bin with args in dir, writing its standard output and error to logPath
// (appending, so a restarted process keeps its earlier log).
func startProcess(name, dir, logPath, bin string, args ...string) (*process, error) {
	return startProcessEnv(name, dir, logPath, nil, bin, args...)
}

// startProcessEnv is startProcess with extra environment variables (NAME=value) added to this
// process's own.
func startProcessEnv(name, dir, logPath string, env []string, bin string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Setpgid lets stop kill the whole group; Pdeathsig ends the child if this process dies
	// without running Close (a killed test binary must not leave peers behind).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Process is a program started beside a stack (the benchmark's own targets): in a process group
// of its own, logging to a file, stopped with its group.
type Process struct{ p *process }

// StartProcess starts bin with args, writing its output to logPath, and waits until readyURL
// answers 200. The error carries the tail of its log.
func StartProcess(ctx context.Context, name, logPath, readyURL, bin string, args ...string) (*Process, error) {
	return StartProcessWithin(ctx, name, logPath, readyURL, 30*time.Second, bin, args...)
}

// StartProcessWithin is StartProcess for a program that may take up to ready to answer (one
// run under valgrind, say).
func StartProcessWithin(ctx context.Context, name, logPath, readyURL string, ready time.Duration, bin string, args ...string) (*Process, error) {
	p, err := startProcess(name, "", logPath, bin, args...)
	if err != nil {
		return nil, err
	}
	if err := p.waitHTTP(ctx, readyURL, ready); err != nil {
		p.stop()
		return nil, err
	}
	return &Process{p}, nil
}

// PID is the process's ID.
func (p *Process) PID() int { return p.p.cmd.Process.Pid }

// Stop ends the process and its group: SIGTERM, then SIGKILL after five seconds.
func (p *Process) Stop() { p.p.stop() }

// Tail returns the last n lines of its log, for error messages.
func (p *Process) Tail(n int) string { return p.p.tail(n) }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process group: SIGTERM, then SIGKILL after a grace period. It is safe to call
// more than once.
func (p *process) stop() {
	if p == nil || p.exited() {
		return
	}
	pgid := -p.cmd.Process.Pid
	syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
	// Anything the process left in its group goes too.
	syscall.Kill(pgid, syscall.SIGKILL)
}

// tail returns the last n lines of the process's log, for error messages.
func (p *process) tail(n int) string {
	return tailFile(p.logPath, n)
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// failure wraps err with the tail of the process's log.
func (p *process) failure(err error) error {
	return fmt.Errorf("%w\n--- last lines of %s ---\n%s\n---", err, p.logPath, p.tail(40))
}

// waitHTTP polls url until it answers 200, the process exits or the timeout passes. The error
// carries the tail of the process's log.
func (p *process) waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-p.done:
			return p.failure(fmt.Errorf("%s exited before %s answered (%v)", p.name, url, p.err))
		case <-ctx.Done():
			return p.failure(fmt.Errorf("%s did not answer 200 at %s within %s (last: %v)", p.name, url, timeout, last))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitTCP polls addr until a TCP connection succeeds and check (when set) accepts the
// connection's first answer.
func (p *process) waitTCP(ctx context.Context, addr string, timeout time.Duration, check func(net.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			if check != nil {
				conn.SetDeadline(time.Now().Add(time.Second))
				err = check(conn)
			}
			conn.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-p.done:
			return p.failure(fmt.Errorf("%s exited before %s accepted connections (%v)", p.name, addr, p.err))
		case <-ctx.Done():
			return p.failure(fmt.Errorf("%s did not accept connections at %s within %s (last: %v)", p.name, addr, timeout, last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FreePorts returns n distinct TCP ports that were free on 127.0.0.1 a moment ago. All n
// listeners are held open together so that the ports differ.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// HostPort returns 127.0.0.1:port, the address of every program of a stack.
func HostPort(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// runCommand runs a short-lived command and returns its standard output. A failure carries
// its standard error.
func runCommand(ctx context.Context, dir, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || stderr.Len() > 0 {
			return stdout.Bytes(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		return stdout.Bytes(), err
	}
	return stdout.Bytes(), nil
}
