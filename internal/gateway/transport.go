package gateway

import (
	"context"
	"net"
	"net/http"
	"time"
)

// NewTransport returns the transport a gateway forwards with: HTTP/1.1 to
// replicas, keep-alive connections reused, no compression (bodies pass
// through as they are). dial connects to a replica; nil dials TCP.
func NewTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	return &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}
