// Package pa is the Kubernetes home of kantai's autoscaler: a
// controller-runtime reconciler for Knative Serving PodAutoscalers of the
// class autoscaling.kantai.dev (annotation autoscaling.knative.dev/class).
// PodAutoscalers of other classes are never touched.
//
// For each such PodAutoscaler (one per Revision, same name) it
//
//   - creates the revision's ServerlessService in Serve mode, owned by the
//     PodAutoscaler, so Knative's SKS reconciler makes the public Service
//     <rev> and the private Service <rev>-private;
//   - holds the Revision's Deployment <rev>-deployment at 0 replicas through
//     its scale subresource (Knative creates it with initial-scale replicas
//     and never changes replicas of a foreign class afterwards);
//   - keeps one NodeReplicaSet <rev>, owned by the PodAutoscaler, with the
//     Deployment's selector and pod template, so <rev>-private selects its
//     pods; the replicas per node come from the shared control step
//     (package control), the origin each replica serves is kept in the
//     annotation kantai.dev/origins;
//   - writes the PodAutoscaler's /status only (spec belongs to Knative's
//     Revision reconciler): observedGeneration, serviceName,
//     metricsServiceName, desiredScale, actualScale and the conditions
//     ScaleTargetInitialized, SKSReady, Active and Ready (see Conditions).
//
// The reconciler owns I/O only: it reads the PodAutoscaler, the
// Deployment, the ServerlessService, the NodeReplicaSets, the Nodes and the
// config maps, calls control.Revision.Step, and writes objects.
//
// Demand: with Gateways set (package gateways, which polls the node
// gateways on the leader), each step takes the revision's demand per origin
// node and service times per node since its previous step, and the RTT
// between nodes; the step's processing estimates go back to every gateway.
// Triggers reconcile a revision at once when requests wait for it or it
// has demand, so scaling from zero does not wait for the tick. Without
// Gateways every step sees zero demand: the replicas follow initial-scale
// (for one stable window after the revision was created), min-scale and
// max-scale, and a revision with min-scale 0 scales to zero one window
// after creation.
package pa
