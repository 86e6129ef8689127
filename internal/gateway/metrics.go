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
}

// NewMetrics registers the gateway series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kantai_gateway_requests_total",
			Help: "Requests answered by a gateway, by function, origin node (the gateway's), destination node and HTTP status.",
		}, []string{"function", "origin", "destination", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kantai_gateway_response_seconds",
			Help:    "Time from a request's arrival at the gateway to the response headers, queueing included.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .075, .1, .15, .2, .3, .5, 1, 2, 5, 10, 30},
		}, []string{"function", "origin", "destination"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kantai_gateway_queue_depth",
			Help: "Requests waiting at a gateway for a replica with room.",
		}, []string{"function", "origin"}),
		buffered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kantai_gateway_buffered_requests",
			Help: "Requests held at a gateway while the function has no ready replica (scale from zero).",
		}, []string{"function", "origin"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kantai_gateway_inflight_requests",
			Help: "Requests a gateway has forwarded and not yet seen answered, by destination node.",
		}, []string{"function", "origin", "destination"}),
	}
	reg.MustRegister(m.requests, m.latency, m.queued, m.buffered, m.inflight)
	return m
}

// forget deletes every series of a function at one gateway (its origin),
// so a deleted function leaves nothing in /metrics.
func (m *Metrics) forget(function, origin string) {
	labels := prometheus.Labels{"function": function, "origin": origin}
	m.requests.DeletePartialMatch(labels)
	m.latency.DeletePartialMatch(labels)
	m.queued.DeletePartialMatch(labels)
	m.buffered.DeletePartialMatch(labels)
	m.inflight.DeletePartialMatch(labels)
}
