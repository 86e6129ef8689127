// Package gateways is the controller leader's link to the node gateways on
// Kubernetes: a Poller, run by the manager on the leader only, that every
// second finds the gateways (ready endpoints of the headless Service
// kantai-gateway-peers, one per node), reads each node's State over the
// node API, and serves what it learned:
//
//   - to the PodAutoscaler reconciler, per revision, the demand and
//     service windows since that revision's previous step (package demand:
//     each window is consumed by exactly one step), the RTT between nodes
//     from the latency rows, and an event that reconciles a revision at
//     once when requests wait for it or it has demand;
//   - to the gateways, the processing estimates of each step
//     (SetProcessing), pushed best effort;
//   - to the Ingress status reconciler, the last-known State of every
//     ready gateway, and an event whenever that view changes.
//
// A gateway that does not answer keeps its last-known State, marked stale;
// nothing is made up for it, and its counters, being cumulative, cover the
// gap once it answers again.
package gateways
