package proxybench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"kantai.dev/kantai/internal/gateway"
)

// NginxHint tells how to get nginx on the developers' Debian machines.
const NginxHint = "apt-get install nginx-light (or nginx)"

const nginxConf = `# written by kantai's proxy benchmark
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    # Request bodies stream to the backend, as through the Go proxies:
    # nginx would otherwise store each one over 16 KiB in a file first.
    client_max_body_size 0;
    proxy_request_buffering off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    upstream backend {
        server %[2]s;
        keepalive 64;
    }
    server {
        listen %[3]s;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
%[4]s        }
    }
}
`

// nginxKantaiHeaders has nginx do the header work the kantai gateway does
// on every request: the client's Host passed on, X-Forwarded-For extended,
// -Proto and -Host set, and two headers added to the answer (which
// replica and node served it). The "nginx-headers" target runs it.
const nginxKantaiHeaders = `            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            add_header ` + gateway.HeaderReplica + ` ` + benchReplica + `;
            add_header ` + gateway.HeaderNode + ` ` + benchNode + `;
`

// nginxVersion returns the "nginx/1.x.y" of a binary.
func nginxVersion(path string) string {
	out, err := exec.Command(path, "-v").CombinedOutput()
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(out))
	return strings.TrimPrefix(s, "nginx version: ")
}

// startNginx runs nginx in the foreground with one worker in front of the
// backend, its configuration and logs in a temporary directory.
func startNginx(ctx context.Context, path, backend, extra string) (*server, error) {
	// A free port, found by the kernel; it is released just before nginx
	// binds it, so another program could take it: retry a few times.
	var lastErr error
	for try := 0; try < 5; try++ {
		dir, err := os.MkdirTemp("", "kantai-proxybench-nginx-")
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		addr := ln.Addr().String()
		ln.Close()
		s, err := runNginx(ctx, path, dir, backend, addr, extra)
		if err == nil {
			return s, nil
		}
		os.RemoveAll(dir)
		lastErr = err
	}
	return nil, lastErr
}

func runNginx(ctx context.Context, path, dir, backend, addr, extra string) (*server, error) {
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, backend, addr, extra)), 0o644); err != nil {
		return nil, err
	}
	// -e sets the error log before the configuration is read, so nothing is
	// written outside dir.
	cmd := exec.Command(path, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf, "-g", "daemon off;")
	setParentDeathSignal(cmd)
	out := &strings.Builder{}
	cmd.Stdout = &limitedWriter{w: out, n: 8 << 10}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	master := cmd.Process.Pid
	s := &server{name: "nginx", addr: addr, cmd: cmd, done: make(chan struct{}), log: out}
	s.pids = func() []int { return append([]int{master}, childPIDs(master)...) }
	go func() { _ = cmd.Wait(); close(s.done); os.RemoveAll(dir) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return nil, fmt.Errorf("nginx exited: %s %s", strings.TrimSpace(out.String()), strings.TrimSpace(string(b)))
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			if len(childPIDs(master)) > 0 {
				return s, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("nginx did not listen on %s within 10s", addr)
}
