package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Endpoint is where the admin API listens: a Unix socket (the default) or,
// only when asked, a TCP address.
type Endpoint struct {
	// Network is "unix" or "tcp".
	Network string
	// Address is the socket's path or TCP host:port.
	Address string
}

// String renders the endpoint the way ParseEndpoint reads it.
func (e Endpoint) String() string {
	return e.Network + "://" + e.Address
}

// Host is the TCP endpoint's host ("" for a Unix socket).
func (e Endpoint) Host() string {
	if e.Network != "tcp" {
		return ""
	}
	h, _, err := net.SplitHostPort(e.Address)
	if err != nil {
		return e.Address
	}
	return h
}

// ParseEndpoint reads an admin address: "unix:///path/admin.sock" or an
// absolute path for a Unix socket, "tcp://host:port" or a bare "host:port"
// (the form KANTAI_ADMIN took before the Unix socket) for TCP. An empty
// string is the default socket (DefaultSocket).
func ParseEndpoint(s string) (Endpoint, error) {
	switch {
	case s == "":
		p, err := DefaultSocket()
		if err != nil {
			return Endpoint{}, err
		}
		return Endpoint{Network: "unix", Address: p}, nil
	case strings.HasPrefix(s, "unix://"):
		p := strings.TrimPrefix(s, "unix://")
		if !filepath.IsAbs(p) {
			return Endpoint{}, fmt.Errorf("admin address %q: the socket path must be absolute", s)
		}
		return Endpoint{Network: "unix", Address: p}, nil
	case filepath.IsAbs(s):
		return Endpoint{Network: "unix", Address: s}, nil
	}
	addr := strings.TrimPrefix(s, "tcp://")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Endpoint{}, fmt.Errorf("admin address %q: want unix:///path, an absolute socket path, or tcp://host:port: %w", s, err)
	}
	if port == "" {
		return Endpoint{}, fmt.Errorf("admin address %q: a port is required", s)
	}
	return Endpoint{Network: "tcp", Address: net.JoinHostPort(host, port)}, nil
}

// DefaultSocket is the admin socket's default path:
// $XDG_RUNTIME_DIR/kantai/admin.sock, or, without a runtime directory,
// <temp dir>/kantai-<uid>/admin.sock. Both directories are private (0700).
func DefaultSocket() (string, error) {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "kantai", "admin.sock"), nil
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("kantai-%d", os.Getuid()), "admin.sock"), nil
}

// IsLoopbackHost reports whether host names this machine's loopback
// interface: "localhost" or an address in 127.0.0.0/8 or ::1.
func IsLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") || strings.EqualFold(host, "localhost.") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrTokenRequired means a TCP bind beyond loopback was asked for without
// a token.
var ErrTokenRequired = errors.New("an admin API reachable beyond loopback needs a token (--admin-token-file, --admin-token or KANTAI_ADMIN_TOKEN)")

// Listen opens the admin API's listener. A Unix socket is created with
// mode 0600 in a directory only the user can enter (created 0700 if
// missing; refused if it is a symlink, another user's, or open to others).
// A stale socket left by a killed fleet is replaced; a live one is an
// error. TCP binds beyond loopback fail without a token.
func Listen(ep Endpoint, token string) (net.Listener, error) {
	switch ep.Network {
	case "unix":
		return listenUnix(ep.Address)
	case "tcp":
		if !IsLoopbackHost(ep.Host()) && token == "" {
			return nil, fmt.Errorf("admin API on %s: %w", ep, ErrTokenRequired)
		}
		ln, err := net.Listen("tcp", ep.Address)
		if err != nil {
			return nil, fmt.Errorf("admin API on %s: %w (is a fleet already running? try kantai down)", ep, err)
		}
		return ln, nil
	}
	return nil, fmt.Errorf("admin API: unknown network %q", ep.Network)
}

func listenUnix(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := privateDir(dir); err != nil {
		return nil, fmt.Errorf("admin API on unix://%s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("admin API on unix://%s: the path exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("admin API on unix://%s: a fleet is already running (stop it with kantai down)", path)
		}
		// Nobody answers: a socket left by a fleet that was killed.
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin API on unix://%s: removing the stale socket: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin API on unix://%s: %w", path, err)
	}
	// The directory already keeps others out; the mode says so again.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin API on unix://%s: %w", path, err)
	}
	return ln, nil
}

// privateDir makes sure dir exists, is a real directory owned by this user
// and is closed to everybody else.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s belongs to uid %d, not to this user (uid %d)", dir, st.Uid, os.Getuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is open to other users (mode %v); want 0700", dir, fi.Mode().Perm())
	}
	return nil
}

// dialer connects to ep whatever the URL's host says.
func (e Endpoint) dialer() func(ctx context.Context, _, _ string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, e.Network, e.Address)
	}
}
