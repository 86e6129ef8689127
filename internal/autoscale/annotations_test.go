package autoscale

import (
	"strings"
	"testing"
	"time"
)

func TestFromAnnotations(t *testing.T) {
	set := DefaultSettings()
	allowZero := set
	allowZero.AllowZeroInitialScale = true
	noZero := set
	noZero.EnableScaleToZero = false
	tests := []struct {
		name  string
		ann   map[string]string
		cc    int
		set   Settings
		check func(Spec) bool
		warns int
		err   string
	}{
		{name: "defaults", set: set, check: func(s Spec) bool { return s == DefaultSpec() }},
		{name: "cc gives 70%", cc: 10, set: set, check: func(s Spec) bool { return s.Target == 7 }},
		{name: "target wins over cc", cc: 10, set: set, ann: map[string]string{AnnotationTarget: "3"},
			check: func(s Spec) bool { return s.Target == 3 }},
		{name: "window in seconds", set: set, ann: map[string]string{AnnotationWindow: "12"},
			check: func(s Spec) bool { return s.Window == 12*time.Second }},
		{name: "legacy spelling", set: set, ann: map[string]string{annPrefix + "minScale": "2"},
			check: func(s Spec) bool { return s.MinScale == 2 }},
		{name: "kantai class", set: set, ann: map[string]string{AnnotationClass: ClassKantai}, check: func(Spec) bool { return true }},
		{name: "other prefixes ignored", set: set, ann: map[string]string{"example.com/x": "y"}, check: func(Spec) bool { return true }},
		{name: "burst capacity warns", set: set, ann: map[string]string{AnnotationBurstCapacity: "10"}, warns: 1, check: func(Spec) bool { return true }},
		{name: "burst capacity -1 silent", set: set, ann: map[string]string{AnnotationBurstCapacity: "-1"}, check: func(Spec) bool { return true }},
		{name: "scale-down-delay warns", set: set, ann: map[string]string{AnnotationScaleDownDelay: "30s"}, warns: 1, check: func(Spec) bool { return true }},
		{name: "zero initial allowed", set: allowZero, ann: map[string]string{AnnotationInitialScale: "0"},
			check: func(s Spec) bool { return s.InitialScale == 0 }},
		{name: "scale to zero disabled", set: noZero, check: func(s Spec) bool { return s.MinScale == 1 }},
		{name: "zero initial refused", set: set, ann: map[string]string{AnnotationInitialScale: "0"}, err: KeyAllowZeroInitialScale},
		{name: "hpa class", set: set, ann: map[string]string{AnnotationClass: "hpa.autoscaling.knative.dev"}, err: AnnotationClass},
		{name: "empty metric is the default", set: set, ann: map[string]string{AnnotationMetric: ""}, check: func(Spec) bool { return true }},
		{name: "rps", set: set, ann: map[string]string{AnnotationMetric: "rps"}, err: AnnotationMetric},
		{name: "NaN target", set: set, ann: map[string]string{AnnotationTarget: "NaN"}, err: AnnotationTarget},
		{name: "Inf burst", set: set, ann: map[string]string{AnnotationBurstCapacity: "+Inf"}, err: AnnotationBurstCapacity},
		{name: "window overflow", set: set, ann: map[string]string{AnnotationWindow: "36028797018963980"}, err: AnnotationWindow},
		{name: "fractional window", set: set, ann: map[string]string{AnnotationWindow: "6500ms"}, err: AnnotationWindow},
		{name: "huge count", set: set, ann: map[string]string{AnnotationMaxScale: "99999999999"}, err: AnnotationMaxScale},
		{name: "unknown key", set: set, ann: map[string]string{annPrefix + "frobnicate": "1"}, err: "frobnicate"},
		{name: "both spellings", set: set, ann: map[string]string{annPrefix + "minScale": "1", AnnotationMinScale: "1"}, err: "both"},
		{name: "min above max", set: set, ann: map[string]string{AnnotationMinScale: "3", AnnotationMaxScale: "2"}, err: AnnotationMinScale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, warns, err := FromAnnotations(tt.ann, tt.cc, tt.set)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want one naming %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(s) {
				t.Errorf("spec %+v does not hold", s)
			}
			if len(warns) != tt.warns {
				t.Errorf("warnings = %v, want %d", warns, tt.warns)
			}
		})
	}
}

func TestParseSettings(t *testing.T) {
	s, err := ParseSettings(map[string]string{KeyStableWindow: "30s", KeyTargetDefault: "50",
		KeyAllowZeroInitialScale: "true", KeyInitialScale: "0", KeyPodAutoscalerClass: ClassKantai, "unrelated": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Defaults.Window != 30*time.Second || s.Defaults.Target != 50 || s.Defaults.InitialScale != 0 || s.Class != ClassKantai {
		t.Errorf("settings = %+v", s)
	}
	for _, bad := range []map[string]string{
		{KeyStableWindow: "1s"}, {KeyInitialScale: "0"}, {KeyMaxScaleDownRate: "1"}, {KeyEnableScaleToZero: "maybe"},
	} {
		if _, err := ParseSettings(bad); err == nil {
			t.Errorf("ParseSettings(%v) accepted", bad)
		}
	}
}
