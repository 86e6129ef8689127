// Package nrs is the controller of the NodeReplicaSet API: it keeps, on each
// node named in spec.replicas, exactly that many pods built from the
// template.
//
// The reconciler reads the NodeReplicaSet, its pods and the nodes from the
// cache, asks the pure function [Plan] what to create and delete, then acts.
// To stay exact while the cache lags behind its own writes, it keeps
// creation and deletion expectations, as the ReplicaSet controller of
// Kubernetes does: after it creates or deletes pods, it takes no further
// create/delete decision for that NodeReplicaSet until the cache has shown
// every one of those writes (or a time-out has passed).
package nrs
