// Package nrs is the controller of the NodeReplicaSet API: it keeps, on each
// node named in spec.replicas, exactly that many pods built from the
// template.
//
// The reconciler reads the NodeReplicaSet, its pods and the nodes from the
// cache, asks the pure function [Plan] what to create and delete, then acts.
// It never creates more pods than asked, even while the cache lags behind
// its own writes:
//   - each pod has a slot on its node and a name derived from the set's UID,
//     the node and the slot ([PodName]), so a repeated create of a slot
//     fails with AlreadyExists instead of making a second pod;
//   - creates are decided on a consistent read of the API server, so a
//     stale cache cannot pick another slot than an earlier create did;
//   - a create whose outcome is unknown (time-out) stays pending and is
//     repeated with the same name until it has a definite answer.
//
// It also keeps creation and deletion expectations, as the ReplicaSet
// controller of Kubernetes does, to avoid needless writes: after it creates
// or deletes pods, it takes no further create/delete decision for that
// NodeReplicaSet until the cache has shown every one of those writes (or a
// time-out has passed).
package nrs
