package autoscale

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Annotation keys, as Knative spells them. Validate names them in its errors
// so a user can find the offending line of a manifest.
const (
	AnnotationTarget               = "autoscaling.knative.dev/target"
	AnnotationTargetUtilization    = "autoscaling.knative.dev/target-utilization-percentage"
	AnnotationWindow               = "autoscaling.knative.dev/window"
	AnnotationPanicWindow          = "autoscaling.knative.dev/panic-window-percentage"
	AnnotationPanicThreshold       = "autoscaling.knative.dev/panic-threshold-percentage"
	AnnotationMinScale             = "autoscaling.knative.dev/min-scale"
	AnnotationMaxScale             = "autoscaling.knative.dev/max-scale"
	AnnotationInitialScale         = "autoscaling.knative.dev/initial-scale"
	AnnotationScaleToZeroRetention = "autoscaling.knative.dev/scale-to-zero-pod-retention-period"
	// The two rate limits are cluster-wide settings in Knative's
	// config-autoscaler ConfigMap, not annotations.
	SettingMaxScaleUpRate   = "config-autoscaler max-scale-up-rate"
	SettingMaxScaleDownRate = "config-autoscaler max-scale-down-rate"
)

// Defaults, equal to Knative's.
const (
	DefaultTarget                   = 100.0
	DefaultTargetUtilization        = 0.7
	DefaultWindow                   = 60 * time.Second
	DefaultPanicWindowPercentage    = 10.0
	DefaultPanicThresholdPercentage = 200.0
	DefaultInitialScale             = 1
	DefaultMaxScaleUpRate           = 1000.0
	DefaultMaxScaleDownRate         = 2.0
)

// Bounds that Validate enforces, taken from Knative's validation.
const (
	MinWindow                   = 6 * time.Second
	MaxWindow                   = time.Hour
	MinTarget                   = 0.01
	MinPanicWindowPercentage    = 1.0
	MaxPanicWindowPercentage    = 100.0
	MinPanicThresholdPercentage = 110.0
	MaxPanicThresholdPercentage = 1000.0
)

// Spec holds one function's autoscaling settings with Knative's meaning.
type Spec struct {
	// Target is the concurrency one replica should carry on average; the
	// wanted count is ceil(average concurrency / Target). It is used as
	// given: derive it with TargetFor when the manifest sets
	// containerConcurrency but no target annotation. Default 100.
	Target float64
	// TargetUtilization is the fraction of containerConcurrency that
	// TargetFor aims at, in (0, 1]. Default 0.7 (Knative's 70%).
	TargetUtilization float64
	// Window is the stable window the average is taken over, in whole
	// seconds between 6s and 1h. It is also how long demand must have been
	// zero before scaling to zero, how long a panic lasts after its cause,
	// and how long InitialScale holds after creation. Default 60s.
	Window time.Duration
	// PanicWindowPercentage sizes the panic window as a percentage of
	// Window, in [1, 100]; the panic window is never shorter than one
	// second (one sample). Default 10.
	PanicWindowPercentage float64
	// PanicThresholdPercentage: panic mode starts when the replicas wanted
	// by the panic average reach this percentage of the ready replicas, in
	// [110, 1000]. Default 200.
	PanicThresholdPercentage float64
	// MinScale is the least total number of replicas. Default 0.
	MinScale int
	// MaxScale is the largest total number of replicas; 0 means unbounded.
	MaxScale int
	// InitialScale is the least total number of replicas until one Window
	// has passed since creation. 0 is allowed. Default 1.
	InitialScale int
	// ScaleToZeroRetention is the least time the last replica stays after
	// the decision to scale to zero is due, at most 1h. Default 0.
	ScaleToZeroRetention time.Duration
	// MaxScaleUpRate bounds one decision to ready×MaxScaleUpRate replicas;
	// must be above 1. Default 1000.
	MaxScaleUpRate float64
	// MaxScaleDownRate bounds one decision to no fewer than
	// ready/MaxScaleDownRate replicas; must be above 1. Default 2.
	MaxScaleDownRate float64
}

// DefaultSpec returns Knative's defaults.
func DefaultSpec() Spec {
	return Spec{
		Target:                   DefaultTarget,
		TargetUtilization:        DefaultTargetUtilization,
		Window:                   DefaultWindow,
		PanicWindowPercentage:    DefaultPanicWindowPercentage,
		PanicThresholdPercentage: DefaultPanicThresholdPercentage,
		InitialScale:             DefaultInitialScale,
		MaxScaleUpRate:           DefaultMaxScaleUpRate,
		MaxScaleDownRate:         DefaultMaxScaleDownRate,
	}
}

// TargetFor derives the per-replica target the way Knative does when
// choosing among sources: an explicit target annotation (annotated > 0)
// wins and is used as is; otherwise a hard limit containerConcurrency > 0
// gives containerConcurrency × utilization (so requests queue at the
// gateway before a replica is saturated); otherwise DefaultTarget. A
// utilization outside (0, 1] counts as DefaultTargetUtilization.
func TargetFor(annotated float64, containerConcurrency int, utilization float64) float64 {
	if annotated > 0 {
		return annotated
	}
	if containerConcurrency > 0 {
		if !(utilization > 0 && utilization <= 1) {
			utilization = DefaultTargetUtilization
		}
		return math.Max(MinTarget, float64(containerConcurrency)*utilization)
	}
	return DefaultTarget
}

// Validate reports every setting out of range, each error naming the
// annotation (or config-autoscaler key) that sets it.
func (s Spec) Validate() error {
	var errs []error
	bad := func(key string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if !(s.Target >= MinTarget) || math.IsInf(s.Target, 0) {
		bad(AnnotationTarget, "%v must be at least %v", s.Target, MinTarget)
	}
	if !(s.TargetUtilization > 0 && s.TargetUtilization <= 1) {
		bad(AnnotationTargetUtilization, "%v%% must be in (0, 100]", s.TargetUtilization*100)
	}
	switch {
	case s.Window < MinWindow || s.Window > MaxWindow:
		bad(AnnotationWindow, "%v must be between %v and %v", s.Window, MinWindow, MaxWindow)
	case s.Window%time.Second != 0:
		bad(AnnotationWindow, "%v must be a whole number of seconds", s.Window)
	}
	switch {
	case !(s.PanicWindowPercentage >= MinPanicWindowPercentage && s.PanicWindowPercentage <= MaxPanicWindowPercentage):
		bad(AnnotationPanicWindow, "%v must be between %v and %v", s.PanicWindowPercentage, MinPanicWindowPercentage, MaxPanicWindowPercentage)
	case s.Window >= MinWindow && time.Duration(s.PanicWindowPercentage/100*float64(s.Window)) < time.Second:
		bad(AnnotationPanicWindow, "%v%% of %v is shorter than one second", s.PanicWindowPercentage, s.Window)
	}
	if !(s.PanicThresholdPercentage >= MinPanicThresholdPercentage && s.PanicThresholdPercentage <= MaxPanicThresholdPercentage) {
		bad(AnnotationPanicThreshold, "%v must be between %v and %v", s.PanicThresholdPercentage, MinPanicThresholdPercentage, MaxPanicThresholdPercentage)
	}
	if s.MinScale < 0 {
		bad(AnnotationMinScale, "%d must not be negative", s.MinScale)
	}
	if s.MaxScale < 0 {
		bad(AnnotationMaxScale, "%d must not be negative", s.MaxScale)
	}
	if s.MaxScale > 0 && s.MinScale > s.MaxScale {
		bad(AnnotationMinScale, "%d must not exceed %s %d", s.MinScale, AnnotationMaxScale, s.MaxScale)
	}
	if s.InitialScale < 0 {
		bad(AnnotationInitialScale, "%d must not be negative", s.InitialScale)
	}
	if s.ScaleToZeroRetention < 0 || s.ScaleToZeroRetention > MaxWindow {
		bad(AnnotationScaleToZeroRetention, "%v must be between 0s and %v", s.ScaleToZeroRetention, MaxWindow)
	}
	if !(s.MaxScaleUpRate > 1) || math.IsInf(s.MaxScaleUpRate, 0) {
		bad(SettingMaxScaleUpRate, "%v must be above 1", s.MaxScaleUpRate)
	}
	if !(s.MaxScaleDownRate > 1) || math.IsInf(s.MaxScaleDownRate, 0) {
		bad(SettingMaxScaleDownRate, "%v must be above 1", s.MaxScaleDownRate)
	}
	return errors.Join(errs...)
}

// normalized replaces the values that would break the arithmetic (division
// by zero, empty windows) by defaults, so an unvalidated Spec still yields
// sane decisions.
func (s Spec) normalized() Spec {
	d := DefaultSpec()
	if !(s.Target >= MinTarget) || math.IsInf(s.Target, 0) {
		s.Target = d.Target
	}
	if s.Window < time.Second {
		s.Window = d.Window
	}
	if s.Window > MaxWindow {
		s.Window = MaxWindow
	}
	if !(s.PanicWindowPercentage > 0 && s.PanicWindowPercentage <= 100) {
		s.PanicWindowPercentage = d.PanicWindowPercentage
	}
	if !(s.PanicThresholdPercentage > 0) || math.IsInf(s.PanicThresholdPercentage, 0) {
		s.PanicThresholdPercentage = d.PanicThresholdPercentage
	}
	if !(s.MaxScaleUpRate > 1) || math.IsInf(s.MaxScaleUpRate, 0) {
		s.MaxScaleUpRate = d.MaxScaleUpRate
	}
	if !(s.MaxScaleDownRate > 1) || math.IsInf(s.MaxScaleDownRate, 0) {
		s.MaxScaleDownRate = d.MaxScaleDownRate
	}
	s.MinScale = max(s.MinScale, 0)
	s.MaxScale = max(s.MaxScale, 0)
	s.InitialScale = max(s.InitialScale, 0)
	s.ScaleToZeroRetention = max(s.ScaleToZeroRetention, 0)
	return s
}
