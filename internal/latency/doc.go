// Package latency measures the round-trip times between the nodes of a
// fleet and shares them as a matrix.
//
// # Agents
//
// Every node runs an Agent. It answers GET /ping with its own row of the
// matrix (the paths it measured), its network coordinate and a few
// coordinates it knows, and GET /matrix with its whole view. It probes its
// peers with GET /ping over a keep-alive HTTP client that dials through
// the node's emulated links (package linkemu), so the probes cross the
// same links as the platform's traffic. Every agent thus learns the whole
// matrix from its own probes; for each path the entry with the latest
// update wins (Merge, which the fleet also uses to combine the agents'
// views), and an agent's own row is only ever written by itself.
//
// The peers are input that moves: SetPeers, AddPeer and ForgetPeer change
// them while the agent runs, as a DaemonSet's agents must when nodes join
// and leave. A forgotten peer's row, column, coordinate and metrics go at
// once, and a probe to it still in flight is discarded when it lands.
//
// # Probing that stays honest as the fleet grows
//
// Probes are spread in time: time is cut into rounds of one interval, and
// each peer is probed once per round at its own phase (a hash of prober and
// peer) plus a random jitter, so a node's probes never leave in one burst
// and two nodes never probe the same peer at the same moment. A peer whose
// previous probe has not landed is skipped, so a dead peer costs one
// pending probe, never a pile.
//
// A probe's round trip is timed on the connection: from the start of the
// Write that hands the request to the socket to the return of the Read that
// brings the first bytes of the answer. Connection set-up is never counted,
// and connections are kept across probes. The peer measures the time from
// the end of reading the request to writing the answer and reports it in a
// Server-Timing header ("ping;dur=0.042", milliseconds); the prober
// subtracts it, so the peer's CPU queue does not count as network.
//
// Up to MeshLimit nodes (default 16) every agent probes every peer each
// interval. Beyond it an agent probes ProbesPerRound peers per interval
// (default 3), whatever the fleet's size. Up to SweepLimit peers (default
// 40 intervals' worth, 120 peers) it sweeps them all in turn, so every
// path is measured once per sweep (33 s at 100 nodes); beyond, it takes
// them in turn from a small neighbour set (default 8) that drifts, one
// member swapped after each pass, three newcomers in four being the
// nearest of a few random peers. Every probe also moves the node's Vivaldi
// coordinate (see Coord and VivaldiConfig; Dabek et al., SIGCOMM 2004),
// fed with the median of the last three samples to that peer, plus an
// adjustment term as serf's. Coordinates travel on /ping answers: the
// peer's own, plus a few others it knows, in rotation (sixteen in large
// fleets, five at 100 nodes: see gossipFor). That spreads them at a
// bounded cost per answer but slowly in large fleets: a coordinate learnt
// second-hand is a median 1.5 minutes old at 1,000 nodes, which is why
// estimates are marked stale only after a time that grows with the fleet
// (coordStaleAfter).
//
// In coordinate mode a round trip's two ends pool what they measured: a
// probe's request carries the prober's smoothed RTT and sample count for
// the path (/ping?from=a&rtt=0.0213&j=0.0012&n=5), the answer carries the peer's,
// and each end's entry is the mean of both weighted by their samples (at
// most fifteen each). The answer carries no other measurement, so that it
// stays small: on a slow link its size adds to the round trip the asker
// times. In an agent's own row, a path measured (by either end) within
// StaleAfter (in coordinate mode by default as long as a coordinate is
// kept, sixty intervals or more) or whose last probe failed keeps its
// measurement; any other path with a known coordinate is estimated from
// the two coordinates and marked Estimated (and
// kantai_node_latency_estimated is 1). Estimates are never passed on in
// /ping answers: whoever has the coordinates can compute them.
//
// The decisions are pure and separate from the runner: the probing plan
// (planner) takes the time and a seeded random source; the coordinate
// update (VivaldiConfig.Update) takes two coordinates and an RTT; the view
// of the matrix takes the time as an argument. Agent.Run is the only code
// with a clock (Config.Clock, so tests run on a fake one), sockets and
// goroutines.
//
// # Smoothing and staleness
//
// Samples are smoothed per peer by an Estimator, an exponentially weighted
// mean and variance (see Estimator for why not TCP's SRTT/RTTVAR). A probe
// that fails or times out is counted, and the path keeps its last value but
// is marked stale; so is any entry not updated within StaleAfter, such as
// the row of a peer that stopped answering. An estimate is stale when one
// of its coordinates has not moved for sixty intervals (longer beyond 300
// nodes). A lone spike, a sample more than 1.5 times the median of the
// last three plus a millisecond, is left out of the smoothed RTT and
// counted: on a busy machine it is the CPU queue, not the link; a real
// change passes from its second sample on, and when the last two samples
// both lie well off the mean (see shifted) the average starts over from
// them, so that a path sampled once a half-minute follows a change in a
// minute or two rather than at 1/8 per sample; in a sweep, a peer whose
// sample lay off its path's level is probed again at once, out of turn.
//
// # Metrics
//
// The agent is a prometheus.Collector for its own row, labelled from and
// to: kantai_node_latency_seconds (measured, or estimated where
// kantai_node_latency_estimated is 1), kantai_node_latency_jitter_seconds
// (measured paths only), kantai_node_latency_stale, the counter
// kantai_latency_probe_failures_total, and kantai_latency_probes_total and
// kantai_latency_probe_spikes_total, labelled from only.
//
// # Figures
//
// BenchmarkYardstick100 simulates the 100-node testbed
// examples/testbeds/regions-100.yaml in virtual time with the agents' own
// view and planner and probe noise like the emulated links', and prints the
// matrix error against issue 12's target; BenchmarkSimulatedFleet runs
// fleets of 1,000 and 5,000 nodes in virtual time on a known,
// real-world-like latency matrix and prints the coordinates' error, the
// probes per node per second and the time to adapt after a node's delay
// jumps; BenchmarkEmulatedAgents runs 100 agents on loopback through
// emulated links. docs/latency.md lists the results.
package latency
