package gateway

import (
	"context"
	"net"
	"net/http"
	"time"
)

// Idle connections the gateway's transport keeps for reuse.
const (
	// IdleConnsPerReplica bounds the idle connections kept to one replica:
	// about the requests one gateway has in flight to it at a peak (a
	// connection closes after use beyond that, and the next peak dials).
	IdleConnsPerReplica = 512
	// IdleConnsTotal bounds them over all replicas, so a node with many
	// replicas does not hold thousands of sockets for nothing.
	IdleConnsTotal = 4096
	// IdleConnTimeout closes an idle connection to a replica.
	IdleConnTimeout = 90 * time.Second
)

// NewTransport returns the transport a gateway forwards with: HTTP/1.1 to
// replicas, keep-alive connections reused within the bounds above, no
// compression (bodies pass through as they are), and no timeout of its
// own (the revision's timeouts apply, see RevisionConfig). dial connects
// to a replica; nil dials TCP.
//
// The read and write buffers keep net/http's 4 KiB: a small request or
// answer fits, and a large body bypasses them (reads into the gateway's
// 32 KiB copy buffer go straight to the socket); 16 to 64 KiB moved 1 MiB
// bodies no faster (BenchmarkTransport_buffers) and would cost memory on
// every pooled connection.
func NewTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	return &http.Transport{
		DialContext:         dial,
		MaxIdleConns:        IdleConnsTotal,
		MaxIdleConnsPerHost: IdleConnsPerReplica,
		IdleConnTimeout:     IdleConnTimeout,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}
