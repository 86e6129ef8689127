// Package ingress writes the status of Knative Ingresses of kantai's class
// (annotation networking.knative.dev/ingress.class:
// kantai.ingress.networking.knative.dev). The gateways build their route
// tables from the Ingresses themselves (package internal/ingress); this
// reconciler, on the controller's leader, only says whether they do: an
// Ingress is LoadBalancerReady once every ready gateway reports that its
// route table holds the Ingress's generation, and its load balancers are
// the gateway Service. It runs on Ingress events and whenever the gateway
// poller's view (package gateways) changes, and writes /status only when
// the status changed. Ingresses of other classes are never touched.
package ingress
