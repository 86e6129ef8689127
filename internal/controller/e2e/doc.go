// Package e2e holds integration tests of the controller's leader with the
// node gateways: the gateway poller, the PodAutoscaler reconciler and the
// Ingress status reconciler run against a real kube-apiserver with Knative
// Serving's own controller and webhook (package k8stest), and fake node
// APIs on loopback stand for the gateway DaemonSet, registered through
// EndpointSlices of its headless Service. It has no code of its own.
package e2e
