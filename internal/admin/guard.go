package admin

import (
	"crypto/subtle"
	"fmt"
	"mime"
	"net"
	"net/http"
	"os"
	"strings"
)

// GuardOptions says what the admin API accepts besides its own CLI.
type GuardOptions struct {
	// Endpoint is where the API listens. On TCP the Host header must name
	// a loopback host or the endpoint's own host (DNS rebinding: a web page
	// whose name resolves to 127.0.0.1 still sends its own name).
	Endpoint Endpoint
	// Token, when set, must come as "Authorization: Bearer <token>" on
	// every request.
	Token string
}

// Guard refuses what a browser or another user could send:
//   - any request with an Origin header, or with Sec-Fetch-Site other than
//     "none" (a web page's request, whatever its method): 403;
//   - on TCP, a Host header that is neither a loopback name or address
//     nor the configured host: 403;
//   - with a token configured, a request without it: 401;
//   - a POST, PUT, PATCH or DELETE whose Content-Type is missing or one a
//     browser may send without a CORS preflight (text/plain, form types):
//     403, so a page can never make the request without asking first, and
//     preflights are never granted.
func Guard(h http.Handler, o GuardOptions) http.Handler {
	token := []byte(o.Token)
	ownHost := o.Endpoint.Host()
	tcp := o.Endpoint.Network == "tcp"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" {
			refuse(w, http.StatusForbidden, fmt.Sprintf("requests from web pages are refused (Origin %q)", origin))
			return
		}
		if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "none" {
			refuse(w, http.StatusForbidden, fmt.Sprintf("requests from web pages are refused (Sec-Fetch-Site %q)", site))
			return
		}
		if tcp && !hostAllowed(r.Host, ownHost, len(token) > 0) {
			refuse(w, http.StatusForbidden, fmt.Sprintf("Host %q is not this admin API's (want localhost, a loopback address or %q)", r.Host, ownHost))
			return
		}
		if len(token) > 0 {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), token) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="kantai admin"`)
				refuse(w, http.StatusUnauthorized, "a valid token is required (Authorization: Bearer …)")
				return
			}
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		default:
			if ct := r.Header.Get("Content-Type"); browserContentType(ct) {
				refuse(w, http.StatusForbidden, fmt.Sprintf("%s needs a Content-Type a web form cannot send (got %q; the CLI sends application/yaml or application/json)", r.Method, ct))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func refuse(w http.ResponseWriter, code int, reason string) {
	http.Error(w, "kantai admin: "+reason, code)
}

// hostAllowed reports whether a Host header names this API: a loopback
// name or address, or the host it was configured to listen on. An API
// bound to every interface (0.0.0.0, ::) has no name of its own; it can
// only be started with a token, and then the token is what protects it, so
// any Host is accepted.
func hostAllowed(hostHeader, own string, withToken bool) bool {
	if withToken && isUnspecified(own) {
		return true
	}
	host := hostHeader
	if h, _, err := net.SplitHostPort(hostHeader); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return false
	}
	if IsLoopbackHost(host) {
		return true
	}
	return own != "" && strings.EqualFold(host, own) && !isUnspecified(own)
}

func isUnspecified(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

// browserContentType reports a missing Content-Type or one of the CORS
// "simple" types, which a page may send cross-origin without a preflight.
func browserContentType(ct string) bool {
	if strings.TrimSpace(ct) == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return true
	}
	switch mt {
	case "text/plain", "application/x-www-form-urlencoded", "multipart/form-data":
		return true
	}
	return false
}

// LoadToken returns the admin token: the flag's value, else the file's
// first line, else "" (no token). A token file open to other users is
// refused.
func LoadToken(token, file string) (string, error) {
	if token != "" {
		return token, nil
	}
	if file == "" {
		return "", nil
	}
	fi, err := os.Stat(file)
	if err != nil {
		return "", fmt.Errorf("admin token file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("admin token file %s: readable by other users (mode %v); chmod 600 it", file, fi.Mode().Perm())
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("admin token file: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	t := strings.TrimSpace(line)
	if t == "" {
		return "", fmt.Errorf("admin token file %s: empty", file)
	}
	return t, nil
}
