// Package nodegw is the Kubernetes home of one node's gateway and latency
// agent: the daemon that cmd/kantai-gateway runs on every node (a
// DaemonSet). It is an adapter and nothing more. It reads the cluster from
// informers (read only), turns what it reads into what the core packages
// take, and serves them:
//
//   - Knative Ingresses of kantai's class → ingress.Translate → the
//     gateway's route table (gateway.SetRoutes);
//   - the Revisions the table names → gateway.SetRevision (concurrency
//     limit, timeouts);
//   - the ready endpoints of each revision's "<rev>-private" Service, with
//     their nodes → gateway.SetReplicas; for a revision whose
//     PodAutoscaler is of another class, the revision's public Service
//     instead, so Knative's activator and autoscaler keep serving it;
//   - Nodes → gateway.SetNodes;
//   - the endpoints of the gateways' headless Service → the latency
//     agent's peers.
//
// It serves the gateway on two listeners (external and cluster-local),
// the agent's probes, the node API (nodeapi, behind a bearer token) and
// Prometheus metrics (read only, no token).
//
// What to send where is computed by pure functions (plan.go) from a
// snapshot of the caches; an applier (apply.go) hands the gateway only
// what changed, in an order that loses no request.
package nodegw
