package pa

import (
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	"knative.dev/pkg/apis"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
)

// Condition reasons this package sets, besides Knative's own.
const (
	// ReasonNoTraffic: Active False, the revision is at zero (Knative's
	// KPA reason).
	ReasonNoTraffic = "NoTraffic"
	// ReasonQueued: Active Unknown, replicas are wanted and none is ready
	// yet (Knative's KPA reason).
	ReasonQueued = "Queued"
	// ReasonInvalidSpec: Active False, an annotation or a config map key
	// is malformed or unsupported; the message names it.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonNoDeployment: Active Unknown, the scale target does not exist
	// (yet).
	ReasonNoDeployment = "NoScaleTarget"
)

// Observed is what a reconcile saw and decided, the input of Status.
type Observed struct {
	// SKS is the ServerlessService; nil when it does not exist yet.
	SKS *netv1alpha1.ServerlessService
	// NotOwned names the kind of a child with the PodAutoscaler's name
	// that the PodAutoscaler does not control ("" when none).
	NotOwned string
	// SpecError is why the autoscaling spec could not be made (a bad
	// annotation or config map key), or nil.
	SpecError error
	// NoTarget says the Deployment was not found.
	NoTarget bool
	// Threshold is the ready pods that initialize the scale target:
	// max(min-scale, initial-scale), min-scale counting 0 while the
	// revision is unreachable.
	Threshold int
	// Desired is the replicas wanted; Ready the replicas ready.
	Desired, Ready int
}

// SetStatus writes the status that o implies into pa.Status, through
// Knative's condition helpers (which derive Ready from ScaleTargetInitialized,
// SKSReady and Active, keep the conditions in Knative's order and keep
// lastTransitionTime when nothing changes). observedGeneration,
// serviceName and metricsServiceName are always set.
//
// ScaleTargetInitialized is latched, as in Knative: True once Ready >=
// Threshold and the SKS has made its public Service; never reset.
//
// Active, checked in this order (Knative's Revision marks itself failed,
// "Initial scale was never achieved", when the PodAutoscaler is Ready=False
// before ScaleTargetInitialized, so only a real failure may do that):
//
//	| case                                  | Active                    |
//	|---------------------------------------|---------------------------|
//	| a child is not owned by the PA        | False NotOwned            |
//	| a bad annotation or config key        | False InvalidSpec         |
//	| no Deployment                         | Unknown NoScaleTarget     |
//	| ScaleTargetInitialized not True       | Unknown Queued            |
//	| Desired == 0                          | False NoTraffic           |
//	| Ready == 0                            | Unknown Queued            |
//	| Ready > 0                             | True                      |
//
// SKSReady mirrors the SKS: True when the SKS is Ready for its current
// generation, else Unknown (NotReady) with the SKS's message.
func SetStatus(pa *asv1alpha1.PodAutoscaler, o Observed) {
	st := &pa.Status
	st.InitializeConditions()
	st.ObservedGeneration = pa.Generation
	public, private := ServiceNames(pa)
	st.ServiceName, st.MetricsServiceName = public, private
	if o.SKS != nil && o.NotOwned == "" {
		if o.SKS.Status.ServiceName != "" {
			st.ServiceName = o.SKS.Status.ServiceName
		}
		if o.SKS.Status.PrivateServiceName != "" {
			st.MetricsServiceName = o.SKS.Status.PrivateServiceName
		}
	}

	switch {
	case o.SKS == nil || o.NotOwned != "":
		st.MarkSKSNotReady("The ServerlessService does not exist yet.")
	case o.SKS.IsReady():
		st.MarkSKSReady()
	default:
		msg := "SKS Services are not ready yet"
		if c := o.SKS.Status.GetCondition(apis.ConditionReady); c != nil && c.Message != "" {
			msg = c.Message
		}
		st.MarkSKSNotReady(msg)
	}

	serviceMade := o.SKS != nil && o.NotOwned == "" && o.SKS.Status.ServiceName != ""
	valid := o.NotOwned == "" && o.SpecError == nil && !o.NoTarget
	if valid && !st.IsScaleTargetInitialized() && serviceMade && o.Ready >= o.Threshold {
		st.MarkScaleTargetInitialized()
	}

	switch {
	case o.NotOwned != "":
		st.MarkResourceNotOwned(o.NotOwned, pa.Name)
	case o.SpecError != nil:
		st.MarkInactive(ReasonInvalidSpec, o.SpecError.Error())
	case o.NoTarget:
		st.MarkActivating(ReasonNoDeployment, "The Deployment "+pa.Spec.ScaleTargetRef.Name+" does not exist.")
	case !st.IsScaleTargetInitialized():
		st.MarkActivating(ReasonQueued, "Waiting for the initial scale to be ready.")
	case o.Desired == 0:
		st.MarkInactive(ReasonNoTraffic, "The target is not receiving traffic.")
	case o.Ready == 0:
		st.MarkActivating(ReasonQueued, "Requests to the target are being buffered as resources are provisioned.")
	default:
		st.MarkActive()
	}

	if valid {
		d, a := int32(o.Desired), int32(o.Ready)
		st.DesiredScale, st.ActualScale = &d, &a
	}
}
