// Package e2e runs kantai on Kubernetes end to end on one machine: a real
// kube-apiserver, scheduler and controller-manager, Knative Serving 1.15's
// own controller and webhook, kantai's controller binary, and nodes whose
// pods run as processes on loopback addresses (k8stest.ProcessKubelet):
// revision pods run kantai's built-in function, the gateway DaemonSet's
// pods run cmd/kantai-gateway. A request enters at a node's gateway and is
// answered by a replica process, as on a cluster.
package e2e
