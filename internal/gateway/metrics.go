package gateway

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the gateway's Prometheus series. One set serves every gateway
// of a process; the origin label tells them apart.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	queued   *prometheus.GaugeVec
	buffered *prometheus.GaugeVec
	inflight *prometheus.GaugeVec
	estimate *prometheus.GaugeVec
}

// NewMetrics registers the gateway series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kantai_gateway_requests_total",
			Help: "Requests answered by a gateway, by function (Service), revision, origin node (the gateway's), destination node and HTTP status.",
		}, []string{"function", "revision", "origin", "destination", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kantai_gateway_response_seconds",
			Help:    "Time from a request's arrival at the gateway to the response headers, queueing included.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .075, .1, .15, .2, .3, .5, 1, 2, 5, 10, 30},
		}, []string{"function", "revision", "origin", "destination"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kantai_gateway_queue_depth",
			Help: "Requests waiting at a gateway for a replica with room.",
		}, []string{"function", "revision", "origin"}),
		buffered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kantai_gateway_buffered_requests",
			Help: "Requests held at a gateway while the revision has no ready replica (scale from zero).",
		}, []string{"function", "revision", "origin"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kantai_gateway_inflight_requests",
			Help: "Requests a gateway has forwarded and not yet seen answered, by destination node.",
		}, []string{"function", "revision", "origin", "destination"}),
		estimate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kantai_gateway_estimate_seconds",
			Help: "What a gateway's policy decides from, per revision and destination node (once the node has held one of the revision's replicas): rtt, processing (the control step's estimate), service (the gateway's fresh figure, 0 when stale) and expected (the kantai policy's expected time at the node's best replica, 0 without one).",
		}, []string{"function", "revision", "origin", "destination", "estimate"}),
	}
	reg.MustRegister(m.requests, m.latency, m.queued, m.buffered, m.inflight, m.estimate)
	return m
}

// forgetRevision drops one gateway's series of a removed revision.
func (m *Metrics) forgetRevision(revision, origin string) {
	l := prometheus.Labels{"revision": revision, "origin": origin}
	m.requests.DeletePartialMatch(l)
	m.latency.DeletePartialMatch(l)
	m.queued.DeletePartialMatch(l)
	m.buffered.DeletePartialMatch(l)
	m.inflight.DeletePartialMatch(l)
	m.estimate.DeletePartialMatch(l)
}

// forgetDestination drops the series of a node that left the fleet.
func (m *Metrics) forgetDestination(revision, origin, destination string) {
	l := prometheus.Labels{"revision": revision, "origin": origin, "destination": destination}
	m.requests.DeletePartialMatch(l)
	m.latency.DeletePartialMatch(l)
	m.inflight.DeletePartialMatch(l)
	m.estimate.DeletePartialMatch(l)
}
