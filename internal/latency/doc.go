// Package latency measures the round-trip times between the nodes of a
// fleet and shares them as a matrix.
//
// Every node runs an Agent. Each interval it sends GET /ping to every peer
// agent at once, over a keep-alive HTTP client that dials through the
// node's emulated links (package linkemu), so the probes cross the same
// links as the platform's traffic. A probe's round trip runs from the moment
// the request has a connection to the first byte of the answer: setting up a
// new connection costs its own round trip and is never counted. The answer
// is the peer's own row of the matrix, so every agent learns the whole
// matrix from its own probes; for each path the entry with the latest
// update wins, and an agent's own row is only ever written by itself.
//
// Samples are smoothed per peer by an Estimator, an exponentially weighted
// mean and variance (see Estimator for why not TCP's SRTT/RTTVAR). A probe
// that fails or times out is counted, and the path keeps its last value but
// is marked stale; so is any entry not updated within a few intervals, such
// as the row of a peer that stopped answering. Probes run concurrently with
// a per-probe timeout, so a dead peer never delays the others.
//
// The agent serves GET /matrix (its whole view) and is a
// prometheus.Collector for its own row: kantai_node_latency_seconds,
// kantai_node_latency_jitter_seconds and kantai_node_latency_stale, with
// labels from and to, and the counter kantai_latency_probe_failures_total.
// from is a constant label, so all the agents of a fleet can register with
// one registry and their rows together make the matrix.
//
// Estimator and the matrix merging are pure: they take samples and times as
// arguments; only Agent reads clocks and does I/O.
package latency
