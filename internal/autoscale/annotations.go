package autoscale

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Further annotation keys read by FromAnnotations.
const (
	annPrefix                   = "autoscaling.knative.dev/"
	AnnotationClass             = annPrefix + "class"
	AnnotationMetric            = annPrefix + "metric"
	AnnotationBurstCapacity     = annPrefix + "target-burst-capacity"
	AnnotationScaleDownDelay    = annPrefix + "scale-down-delay"
	AnnotationActivationScale   = annPrefix + "activation-scale"
	AnnotationMetricAggregation = annPrefix + "metric-aggregation-algorithm"
)

// Classes kantai's autoscaler answers to: its own, and Knative's default KPA
// class, whose semantics it follows, so one manifest serves the local fleet
// and a cluster where kantai is the default autoscaler.
const (
	ClassKantai = "autoscaling.kantai.dev"
	ClassKPA    = "kpa.autoscaling.knative.dev"
)

// Keys of Knative's config-autoscaler ConfigMap that Settings reads.
const (
	KeyTargetDefault         = "container-concurrency-target-default"
	KeyTargetPercentage      = "container-concurrency-target-percentage"
	KeyStableWindow          = "stable-window"
	KeyPanicWindowPercentage = "panic-window-percentage"
	KeyPanicThreshold        = "panic-threshold-percentage"
	KeyMaxScaleUpRate        = "max-scale-up-rate"
	KeyMaxScaleDownRate      = "max-scale-down-rate"
	KeyInitialScale          = "initial-scale"
	KeyAllowZeroInitialScale = "allow-zero-initial-scale"
	KeyMinScale              = "min-scale"
	KeyMaxScale              = "max-scale"
	KeyMaxScaleLimit         = "max-scale-limit"
	KeyRetention             = "scale-to-zero-pod-retention-period"
	KeyEnableScaleToZero     = "enable-scale-to-zero"
	KeyPodAutoscalerClass    = "pod-autoscaler-class"
)

// Settings are the cluster-wide defaults and limits, as config-autoscaler
// holds them.
type Settings struct {
	// Defaults is the spec of a revision without annotations, before
	// containerConcurrency is taken into account; its Target is
	// container-concurrency-target-default.
	Defaults Spec
	// AllowZeroInitialScale lets a revision ask for initial-scale 0.
	AllowZeroInitialScale bool
	// MaxScaleLimit bounds max-scale annotations; 0 means no bound.
	MaxScaleLimit int
	// EnableScaleToZero false keeps at least one replica of every revision.
	EnableScaleToZero bool
	// Class is the autoscaler class of revisions that name none.
	Class string
}

// DefaultSettings are Knative's defaults.
func DefaultSettings() Settings {
	return Settings{Defaults: DefaultSpec(), EnableScaleToZero: true, Class: ClassKPA}
}

// ParseSettings reads config-autoscaler's data over Knative's defaults.
// Keys it does not use are ignored, as Knative ignores keys of other
// components; a malformed value is an error naming its key.
func ParseSettings(data map[string]string) (Settings, error) {
	s := DefaultSettings()
	d := &s.Defaults
	var errs []string
	bad := func(key, v, why string) { errs = append(errs, fmt.Sprintf("config-autoscaler %s: %q %s", key, v, why)) }
	for _, key := range sortedKeys(data) {
		v := strings.TrimSpace(data[key])
		var err error
		switch key {
		case KeyTargetDefault:
			d.Target, err = parseFloat(v, MinTarget, math.MaxFloat64)
		case KeyMaxScaleUpRate:
			d.MaxScaleUpRate, err = parseFloat(v, math.Nextafter(1, 2), math.MaxFloat64)
		case KeyMaxScaleDownRate:
			d.MaxScaleDownRate, err = parseFloat(v, math.Nextafter(1, 2), math.MaxFloat64)
		case KeyMaxScaleLimit:
			s.MaxScaleLimit, err = parseCount(v)
		case KeyAllowZeroInitialScale:
			s.AllowZeroInitialScale, err = strconv.ParseBool(v)
		case KeyEnableScaleToZero:
			s.EnableScaleToZero, err = strconv.ParseBool(v)
		case KeyPodAutoscalerClass:
			s.Class = v
		default:
			if f, ok := fieldBySetting[key]; ok {
				err = f.set(d, v)
			}
		}
		if err != nil {
			bad(key, v, err.Error())
		}
	}
	if d.InitialScale == 0 && !s.AllowZeroInitialScale {
		bad(KeyInitialScale, "0", "needs "+KeyAllowZeroInitialScale+": \"true\"")
	}
	if len(errs) > 0 {
		return s, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return s, nil
}

// specField is a setting that a revision's annotation and a
// config-autoscaler key both set, with one parser and one set of bounds.
type specField struct {
	annotation, setting string
	set                 func(s *Spec, v string) error
}

var specFields = []specField{
	{AnnotationTargetUtilization, KeyTargetPercentage, func(s *Spec, v string) (err error) {
		p, err := parseFloat(v, 1, 100)
		s.TargetUtilization = p / 100
		return err
	}},
	{AnnotationWindow, KeyStableWindow, func(s *Spec, v string) (err error) {
		s.Window, err = parseDuration(v, MinWindow, MaxWindow)
		return err
	}},
	{AnnotationPanicWindow, KeyPanicWindowPercentage, func(s *Spec, v string) (err error) {
		s.PanicWindowPercentage, err = parseFloat(v, MinPanicWindowPercentage, MaxPanicWindowPercentage)
		return err
	}},
	{AnnotationPanicThreshold, KeyPanicThreshold, func(s *Spec, v string) (err error) {
		s.PanicThresholdPercentage, err = parseFloat(v, MinPanicThresholdPercentage, MaxPanicThresholdPercentage)
		return err
	}},
	{AnnotationMinScale, KeyMinScale, func(s *Spec, v string) (err error) { s.MinScale, err = parseCount(v); return err }},
	{AnnotationMaxScale, KeyMaxScale, func(s *Spec, v string) (err error) { s.MaxScale, err = parseCount(v); return err }},
	{AnnotationInitialScale, KeyInitialScale, func(s *Spec, v string) (err error) { s.InitialScale, err = parseCount(v); return err }},
	{AnnotationScaleToZeroRetention, KeyRetention, func(s *Spec, v string) (err error) {
		s.ScaleToZeroRetention, err = parseDuration(v, 0, MaxWindow)
		return err
	}},
}

var fieldByAnnotation, fieldBySetting = func() (map[string]specField, map[string]specField) {
	a, c := map[string]specField{}, map[string]specField{}
	for _, f := range specFields {
		a[f.annotation], c[f.setting] = f, f
	}
	return a, c
}()

// Warning is an annotation understood but without effect here.
type Warning struct {
	Key, Message string
}

func (w Warning) String() string { return fmt.Sprintf("annotation %s: %s", w.Key, w.Message) }

// legacy spellings Knative still accepts.
var aliases = map[string]string{
	annPrefix + "minScale":     AnnotationMinScale,
	annPrefix + "maxScale":     AnnotationMaxScale,
	annPrefix + "initialScale": AnnotationInitialScale,
}

// FromAnnotations turns a revision's annotations, its containerConcurrency
// and the cluster's settings into the autoscaling spec, the one place where
// Knative's keys and bounds are read. Every error names its annotation.
// Keys outside autoscaling.knative.dev/ are not looked at. Annotations that
// are understood but change nothing come back as warnings: the gateway is
// always in the request path (what target-burst-capacity -1 asks of
// Knative), and the delays and aggregation that tune Knative's own
// autoscaler have no counterpart.
func FromAnnotations(ann map[string]string, containerConcurrency int, set Settings) (Spec, []Warning, error) {
	s := set.Defaults
	var warns []Warning
	var errs []string
	fail := func(key, v, why string) {
		errs = append(errs, fmt.Sprintf("annotations[%q]: invalid value %q: %s", key, v, why))
	}
	norm := make(map[string]string, len(ann))
	for k, v := range ann {
		if strings.HasPrefix(k, annPrefix) {
			norm[k] = strings.TrimSpace(v)
		}
	}
	for old, key := range aliases {
		if v, ok := norm[old]; ok {
			if _, both := norm[key]; both {
				errs = append(errs, fmt.Sprintf("annotations: both %s and %s are set", old, key))
			}
			norm[key] = v
			delete(norm, old)
		}
	}
	target := 0.0
	for _, key := range sortedKeys(norm) {
		v := norm[key]
		var err error
		switch key {
		case AnnotationClass:
			if v != ClassKantai && v != ClassKPA {
				err = fmt.Errorf("kantai scales revisions of class %s or %s", ClassKantai, ClassKPA)
			}
		case AnnotationMetric:
			// Knative's webhook sets the metric to "" on PodAutoscalers of
			// classes other than its own: the class's default, here
			// concurrency.
			if v != "concurrency" && v != "" {
				err = fmt.Errorf("only the concurrency metric is supported")
			}
		case AnnotationTarget:
			target, err = parseFloat(v, MinTarget, math.MaxFloat64)
		case AnnotationMaxScale:
			err = fieldByAnnotation[key].set(&s, v)
			if err == nil && set.MaxScaleLimit > 0 && (s.MaxScale == 0 || s.MaxScale > set.MaxScaleLimit) {
				err = fmt.Errorf("must be between 1 and max-scale-limit %d", set.MaxScaleLimit)
			}
		case AnnotationInitialScale:
			err = fieldByAnnotation[key].set(&s, v)
			if err == nil && s.InitialScale == 0 && !set.AllowZeroInitialScale {
				err = fmt.Errorf("0 needs config-autoscaler %s: \"true\"", KeyAllowZeroInitialScale)
			}
		case AnnotationBurstCapacity:
			var x float64
			x, err = parseFloat(v, -1, math.MaxFloat64)
			if err == nil && x < 0 && x != -1 {
				err = fmt.Errorf("must be -1 or at least 0")
			}
			if err == nil && x != -1 {
				warns = append(warns, Warning{key, "the gateway is always in the request path, as with -1; the value has no effect"})
			}
		case AnnotationScaleDownDelay:
			_, err = parseDuration(v, 0, MaxWindow)
			if err == nil {
				warns = append(warns, Warning{key, "not implemented; scale-down follows the stable window"})
			}
		case AnnotationActivationScale:
			var n int
			n, err = parseCount(v)
			if err == nil && n > 1 {
				warns = append(warns, Warning{key, "not implemented; scale from zero starts one replica per waiting origin"})
			}
		case AnnotationMetricAggregation:
			warns = append(warns, Warning{key, "not implemented; windows are plain averages"})
		default:
			f, ok := fieldByAnnotation[key]
			if !ok {
				errs = append(errs, fmt.Sprintf("annotations[%q]: not supported by kantai", key))
				continue
			}
			err = f.set(&s, v)
		}
		if err != nil {
			fail(key, v, err.Error())
		}
	}
	s.Target = TargetFor(target, containerConcurrency, s.TargetUtilization)
	if !set.EnableScaleToZero && s.MinScale == 0 {
		s.MinScale = 1
	}
	if len(errs) == 0 {
		if err := s.Validate(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return s, warns, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return s, warns, nil
}

// parseFloat reads a finite number in [lo, hi].
func parseFloat(v string, lo, hi float64) (float64, error) {
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, fmt.Errorf("not a finite number")
	}
	if x < lo || x > hi {
		if hi == math.MaxFloat64 {
			return 0, fmt.Errorf("must be at least %v", lo)
		}
		return 0, fmt.Errorf("must be between %v and %v", lo, hi)
	}
	return x, nil
}

// parseCount reads a non-negative integer that fits an int32, as Knative's
// fields do.
func parseCount(v string) (int, error) {
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("not an integer of at most %d", math.MaxInt32)
	}
	if n < 0 {
		return 0, fmt.Errorf("must not be negative")
	}
	return int(n), nil
}

// parseDuration reads "12s" or, as Knative also does, a plain number of
// seconds, in [lo, hi]; the bound is checked before any arithmetic, so a
// huge count cannot overflow into range.
func parseDuration(v string, lo, hi time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseInt(v, 10, 64)
		if nerr != nil {
			return 0, fmt.Errorf("not a duration like \"12s\"")
		}
		if n < 0 || n > int64(hi/time.Second) {
			return 0, fmt.Errorf("must be between %v and %v", lo, hi)
		}
		d = time.Duration(n) * time.Second
	}
	if d < lo || d > hi {
		return 0, fmt.Errorf("must be between %v and %v", lo, hi)
	}
	return d, nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
