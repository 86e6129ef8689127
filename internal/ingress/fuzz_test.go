package ingress

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"knative.dev/networking/pkg/apis/networking"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"

	"kantai.dev/kantai/internal/gateway"
)

// bytes hands out the fuzzer's input as small choices, zeros once spent.
type bytes struct{ b []byte }

func (s *bytes) pick(n int) int {
	if len(s.b) == 0 {
		return 0
	}
	v := int(s.b[0]) % n
	s.b = s.b[1:]
	return v
}

func oneOf[T any](s *bytes, xs ...T) T { return xs[s.pick(len(xs))] }

// orBad picks a valid value, or (one time in 32) one of the bad ones.
func orBad[T any](s *bytes, valid []T, bad ...T) T {
	if s.pick(32) == 31 {
		return oneOf(s, bad...)
	}
	return oneOf(s, valid...)
}

// fuzzIngresses builds up to four Ingresses of Knative's shape from data,
// with hosts, prefixes, percents and ports drawn from small sets so that
// conflicts, defaults and refusals all happen, most fields valid.
func fuzzIngresses(data []byte) []*netv1alpha1.Ingress {
	s := &bytes{data}
	hosts := []string{"a.ns", "a.ns.svc", "b.ns.example.com", "B.ns.example.com", "c.example.org", "d.example.org", "e.example.org", "f.ns.svc"}
	badHosts := []string{"x:80", "*.example.com", "", "g.example.org."}
	var ings []*netv1alpha1.Ingress
	for i, n := 0, 1+s.pick(4); i < n; i++ {
		ing := &netv1alpha1.Ingress{ObjectMeta: metav1.ObjectMeta{
			Namespace: oneOf(s, "ns", "other"), Name: fmt.Sprintf("ing%d", i), Generation: int64(1 + s.pick(3)),
			CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(s.pick(3)) * time.Minute)),
			Annotations:       map[string]string{networking.IngressClassAnnotationKey: orBad(s, []string{Class}, "other-class")},
		}}
		ing.Spec.HTTPOption = orBad(s, []netv1alpha1.HTTPOption{netv1alpha1.HTTPOptionEnabled, netv1alpha1.HTTPOptionRedirected, ""}, "Bad")
		if s.pick(32) == 31 {
			ing.Spec.TLS = []netv1alpha1.IngressTLS{{Hosts: []string{"b.ns.example.com"}, SecretName: "s"}}
		}
		for r, nr := 0, orBad(s, []int{1, 2, 3}, 0); r < nr; r++ {
			rule := netv1alpha1.IngressRule{Visibility: orBad(s, []netv1alpha1.IngressVisibility{netv1alpha1.IngressVisibilityExternalIP, netv1alpha1.IngressVisibilityClusterLocal, ""}, "Bad")}
			for h, nh := 0, orBad(s, []int{1, 2, 3}, 0); h < nh; h++ {
				rule.Hosts = append(rule.Hosts, orBad(s, hosts, badHosts...))
			}
			if s.pick(32) != 31 {
				rule.HTTP = &netv1alpha1.HTTPIngressRuleValue{}
				for p, np := 0, orBad(s, []int{1, 2, 3}, 0); p < np; p++ {
					path := netv1alpha1.HTTPIngressPath{Path: orBad(s, []string{"", "/", "/a"}, "a")}
					if s.pick(3) == 2 {
						path.Headers = map[string]netv1alpha1.HeaderMatch{orBad(s, []string{"Knative-Serving-Tag", "x-tag"}, "bad name"): {Exact: oneOf(s, "t", "")}}
					}
					if s.pick(4) == 3 {
						path.AppendHeaders = map[string]string{orBad(s, []string{"X-A"}, "bad:name"): "v"}
					}
					if s.pick(5) == 4 {
						path.RewriteHost = orBad(s, hosts, badHosts...)
					}
					left := 100
					nk := orBad(s, []int{1, 2, 3}, 0)
					if path.RewriteHost != "" {
						nk = orBad(s, []int{1}, 2)
					}
					for k := 0; k < nk; k++ {
						pct := min(oneOf(s, 0, 10, 50, 90), left)
						if k == nk-1 {
							pct = left
							if nk == 1 && s.pick(2) == 1 {
								pct = 0 // defaults to 100
							}
						}
						left -= pct
						path.Splits = append(path.Splits, netv1alpha1.IngressBackendSplit{
							IngressBackend: netv1alpha1.IngressBackend{
								ServiceNamespace: orBad(s, []string{ing.Namespace}, "", "elsewhere"),
								ServiceName:      orBad(s, []string{"r1", "r2"}, "", "a/b"),
								ServicePort:      orBad(s, []intstr.IntOrString{intstr.FromInt(80), intstr.FromString("http")}, intstr.FromInt(81), intstr.FromInt(443), intstr.FromInt(0), intstr.FromString("x")),
							},
							Percent:       orBad(s, []int{pct}, -1, 120, pct+1),
							AppendHeaders: map[string]string{"Knative-Serving-Revision": "r"},
						})
					}
					rule.HTTP.Paths = append(rule.HTTP.Paths, path)
				}
			}
			ing.Spec.Rules = append(ing.Spec.Rules, rule)
		}
		if s.pick(10) == 9 {
			now := metav1.NewTime(epoch)
			ing.DeletionTimestamp = &now
		}
		ings = append(ings, ing)
	}
	return ings
}

// FuzzTranslate: any Ingresses of Knative's shape translate without
// panicking, in the same way whatever their order, into a table the
// gateway accepts; each Ingress of the class is either served or has a
// problem; the external routes are served routes made of ExternalIP rules'
// hosts.
func FuzzTranslate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 0, 0, 0, 0, 0, 0, 1, 2, 0, 2, 0, 1, 1, 1, 2, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0})
	f.Add([]byte("kantai routes every rule of every ingress of its class"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ings := fuzzIngresses(data)
		tb := Translate(ings)
		rev := slices.Clone(ings)
		slices.Reverse(rev)
		if again := Translate(rev); !reflect.DeepEqual(again, tb) {
			t.Fatalf("the order of the Ingresses changed the table:\n%+v\n%+v", tb, again)
		}
		if err := gateway.CheckRoutes(tb.Internal); err != nil {
			t.Fatalf("the gateway refuses the table: %v\n%+v", err, tb.Internal)
		}
		externalHosts := map[string]bool{}
		for _, ing := range ings {
			k := key(ing)
			_, served := tb.Generations[k]
			p, refused := tb.Problems[k]
			if !Ours(ing) || ing.DeletionTimestamp != nil {
				if served || refused {
					t.Fatalf("%s is not for kantai, yet served %v refused %v", k, served, refused)
				}
				continue
			}
			if served == refused {
				t.Fatalf("%s: served %v and refused %v", k, served, refused)
			}
			if refused && (p.Reason == "" || p.Message == "" || p.Generation != ing.Generation) {
				t.Fatalf("%s: problem %+v", k, p)
			}
			if served {
				for _, r := range ing.Spec.Rules {
					if r.Visibility != netv1alpha1.IngressVisibilityClusterLocal {
						for _, h := range r.Hosts {
							externalHosts[h] = true
						}
					}
				}
			}
		}
		all := map[string]bool{}
		for _, r := range tb.Internal {
			for _, h := range r.Hosts {
				all[h] = true
			}
		}
		for _, r := range tb.External() {
			if r.Visibility != gateway.External {
				t.Fatalf("external route %+v is not external", r)
			}
			for _, h := range r.Hosts {
				if !all[h] {
					t.Fatalf("external host %s is not served in the cluster", h)
				}
				if !externalHosts[h] && !externalHosts[upperB(h)] {
					t.Fatalf("external host %s comes from no ExternalIP rule", h)
				}
			}
		}
	})
}

// upperB undoes the one case difference the fuzzed hosts have.
func upperB(h string) string {
	if h == "b.ns.example.com" {
		return "B.ns.example.com"
	}
	return h
}
