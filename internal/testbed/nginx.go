package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ReservePort takes the next of the stack's reserved gateway ports for a program other than
// headgate, such as an nginx in front of an instance: Dex accepts that port's
// /oauth2/callback, so an instance whose public_url is the program's URL can sign people in.
// Dex cannot learn a new redirect URI without a restart, which would end the other tests'
// sign-ins.
func (s *Stack) ReservePort() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.gateways)
	if n >= len(s.gatewayPorts) {
		return 0, fmt.Errorf("reserve a port: all %d reserved gateway ports are in use (raise Options.MaxGateways)", n)
	}
	// A gateway that never runs holds the port: Close's Stop of it does nothing.
	s.gateways = append(s.gateways, &Gateway{URL: "http://" + HostPort(s.gatewayPorts[n]), name: fmt.Sprintf("reserved%d", n+1)})
	return s.gatewayPorts[n], nil
}

// StartNginx runs nginx on 127.0.0.1:port with one server whose body is server (location
// blocks, such as the README's recipe), from a new temporary directory, and waits until it
// accepts connections. The nginx binary is NGINX_BIN, or nginx on PATH, or /usr/sbin/nginx
// (Debian's package, where PATH often lacks /usr/sbin).
func StartNginx(ctx context.Context, port int, server string) (*FrontProxy, error) {
	bin, err := nginxBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "headgate-nginx-")
	if err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	// Run as root, nginx's workers become nobody, and must still reach the temporary files.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "temp"), 0o755); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	temp := filepath.Join(dir, "temp")
	conf := fmt.Sprintf(`error_log %[1]s/error.log info;
events {
    worker_connections 256;
}
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    server {
        listen %[3]s;
%[4]s
    }
}
`, dir, temp, HostPort(port), server)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	args := []string{"-p", dir + "/", "-c", confPath, "-e", filepath.Join(dir, "error.log"),
		"-g", "daemon off; master_process on; worker_processes 1; pid " + filepath.Join(dir, "nginx.pid") + ";"}
	if out, err := runCommand(ctx, dir, bin, append([]string{"-t"}, args...)...); err != nil {
		return nil, fmt.Errorf("nginx -t: %w\n%s", err, out)
	}
	return startFrontProxy(ctx, "nginx", dir, port, "error.log", nil, bin, args...)
}

// nginxBinary finds the nginx to run.
func nginxBinary() (string, error) {
	if bin := os.Getenv("NGINX_BIN"); bin != "" {
		return bin, nil
	}
	if bin, err := exec.LookPath("nginx"); err == nil {
		return bin, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", fmt.Errorf("no nginx: install Debian's nginx package (.ci/run does) or set NGINX_BIN")
}
