package nodegw

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/rest"

	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/nodeapi"
)

// recorder is a target that records the calls it gets.
type recorder struct {
	calls     []string
	routesErr error
}

func (r *recorder) SetNodes(n []string) error {
	r.calls = append(r.calls, fmt.Sprint("nodes ", n))
	return nil
}
func (r *recorder) SetRevision(c gateway.RevisionConfig) {
	r.calls = append(r.calls, fmt.Sprintf("revision %s cc=%d", c.Key(), c.ContainerConcurrency))
}
func (r *recorder) RemoveRevision(key string) { r.calls = append(r.calls, "remove "+key) }
func (r *recorder) SetReplicas(key string, reps []gateway.ReplicaInfo) {
	r.calls = append(r.calls, fmt.Sprintf("replicas %s %d", key, len(reps)))
}
func (r *recorder) SetRoutes(routes []gateway.Route) error {
	if r.routesErr != nil {
		r.calls = append(r.calls, "routes refused")
		return r.routesErr
	}
	r.calls = append(r.calls, fmt.Sprintf("routes %d", len(routes)))
	return nil
}

var _ target = (*recorder)(nil)

func desired(gen int64, revs map[string]int, reps map[string]int) Desired {
	d := Desired{Nodes: []string{"a", "me"}, Revisions: map[string]gateway.RevisionConfig{},
		Replicas: map[string][]gateway.ReplicaInfo{}, Generations: map[string]int64{"ns/ing": gen}}
	r := gateway.Route{Hosts: []string{"h"}}
	for key, cc := range revs {
		d.Revisions[key] = gateway.RevisionConfig{Namespace: "ns", Name: key[3:], ContainerConcurrency: cc}
		r.Targets = append(r.Targets, gateway.Target{Revision: key, Percent: 100})
	}
	for key, n := range reps {
		for i := range n {
			d.Replicas[key] = append(d.Replicas[key], gateway.ReplicaInfo{Name: fmt.Sprint(key, i), Node: "a", Address: "x:1"})
		}
	}
	d.Routes = []gateway.Route{r}
	return d
}

func TestApplier_apply(t *testing.T) {
	rec := &recorder{}
	a := newApplier(rec)
	step := func(name string, d Desired, want ...string) {
		t.Helper()
		rec.calls = nil
		if err := a.apply(d); err != nil && rec.routesErr == nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(want, rec.calls); diff != "" {
			t.Errorf("%s: calls (-want,+got):\n%s", name, diff)
		}
	}
	step("first", desired(1, map[string]int{"ns/r1": 0}, nil),
		"nodes [a me]", "revision ns/r1 cc=0", "routes 1")
	step("same again: nothing", desired(1, map[string]int{"ns/r1": 0}, nil))
	step("replicas come", desired(1, map[string]int{"ns/r1": 0}, map[string]int{"ns/r1": 2}), "replicas ns/r1 2")
	step("config changes", desired(1, map[string]int{"ns/r1": 3}, map[string]int{"ns/r1": 2}), "revision ns/r1 cc=3")
	// A rollout: the new revision is set up before the routes name it, the
	// old one removed after.
	step("rollout", desired(2, map[string]int{"ns/r2": 0}, map[string]int{"ns/r2": 1}),
		"revision ns/r2 cc=0", "replicas ns/r2 1", "routes 1", "remove ns/r1")
	if diff := cmp.Diff(map[string]int64{"ns/ing": 2}, a.held); diff != "" {
		t.Errorf("held (-want,+got):\n%s", diff)
	}
	step("replicas go", desired(2, map[string]int{"ns/r2": 0}, nil), "replicas ns/r2 0")

	// The gateway refuses the next table: it keeps r2 and generation 2.
	rec.routesErr = errors.New("host h already belongs to route 0")
	step("refused", desired(3, map[string]int{"ns/r3": 0}, nil), "revision ns/r3 cc=0", "routes refused")
	if diff := cmp.Diff(map[string]int64{"ns/ing": 2}, a.held); diff != "" {
		t.Errorf("held after a refusal (-want,+got):\n%s", diff)
	}
	if p := a.problems["ns/ing"]; p.Reason != ReasonRouteTableRejected {
		t.Errorf("problem = %+v, want reason %s", p, ReasonRouteTableRejected)
	}
	if !a.known("ns/r2") || !a.known("ns/r3") {
		t.Errorf("revisions of the held table and of the refused one should both be known")
	}
	rec.routesErr = nil
	step("accepted", desired(3, map[string]int{"ns/r3": 0}, nil), "routes 1", "remove ns/r2")
	if diff := cmp.Diff(map[string]nodeapi.Problem{}, a.problems); diff != "" {
		t.Errorf("problems after acceptance (-want,+got):\n%s", diff)
	}
}

func TestNew_refusesIncompleteConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no node", Config{Token: "t", Rest: &rest.Config{}}, "node name is empty"},
		{"no token", Config{Node: "a", Rest: &rest.Config{}}, "token is empty"},
		{"no API server", Config{Node: "a", Token: "t"}, "no API server"},
		{"unknown engine", Config{Node: "a", Token: "t", Rest: &rest.Config{}, Engine: "h2o"}, `gateway engine "h2o"`},
		{"header bound too small", Config{Node: "a", Token: "t", Rest: &rest.Config{}, MaxHeaderBytes: 512}, "max header bytes 512"},
		{"header bound negative", Config{Node: "a", Token: "t", Rest: &rest.Config{}, MaxHeaderBytes: -1}, "max header bytes -1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
