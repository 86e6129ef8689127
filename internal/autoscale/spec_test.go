package autoscale

import (
	"strings"
	"testing"
	"time"
)

func TestSpec_Validate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Spec)
		want   []string // substrings the error must contain; none means valid
	}{
		{name: "defaults", modify: func(*Spec) {}},
		{name: "demo", modify: func(s *Spec) { s.Window, s.Target = 12*time.Second, 10 }},
		{name: "initial scale zero", modify: func(s *Spec) { s.InitialScale = 0 }},
		{name: "window bounds inclusive", modify: func(s *Spec) { s.Window = time.Hour }},
		{name: "target zero", modify: func(s *Spec) { s.Target = 0 }, want: []string{AnnotationTarget}},
		{name: "utilization above one", modify: func(s *Spec) { s.TargetUtilization = 1.5 }, want: []string{AnnotationTargetUtilization}},
		{name: "window too short", modify: func(s *Spec) { s.Window = 5 * time.Second }, want: []string{AnnotationWindow, "between 6s and 1h"}},
		{name: "window too long", modify: func(s *Spec) { s.Window = 2 * time.Hour }, want: []string{AnnotationWindow}},
		{name: "window sub-second", modify: func(s *Spec) { s.Window = 6500 * time.Millisecond }, want: []string{AnnotationWindow, "whole number of seconds"}},
		{name: "panic window percentage", modify: func(s *Spec) { s.PanicWindowPercentage = 0 }, want: []string{AnnotationPanicWindow}},
		{name: "panic window under a second", modify: func(s *Spec) { s.Window, s.PanicWindowPercentage = 6*time.Second, 10 }, want: []string{AnnotationPanicWindow, "shorter than one second"}},
		{name: "panic threshold low", modify: func(s *Spec) { s.PanicThresholdPercentage = 100 }, want: []string{AnnotationPanicThreshold}},
		{name: "panic threshold high", modify: func(s *Spec) { s.PanicThresholdPercentage = 1001 }, want: []string{AnnotationPanicThreshold}},
		{name: "min scale negative", modify: func(s *Spec) { s.MinScale = -1 }, want: []string{AnnotationMinScale}},
		{name: "max scale negative", modify: func(s *Spec) { s.MaxScale = -1 }, want: []string{AnnotationMaxScale}},
		{name: "min above max", modify: func(s *Spec) { s.MinScale, s.MaxScale = 5, 3 }, want: []string{AnnotationMinScale, "must not exceed " + AnnotationMaxScale}},
		{name: "min with unbounded max", modify: func(s *Spec) { s.MinScale = 5 }},
		{name: "initial scale negative", modify: func(s *Spec) { s.InitialScale = -1 }, want: []string{AnnotationInitialScale}},
		{name: "retention negative", modify: func(s *Spec) { s.ScaleToZeroRetention = -time.Second }, want: []string{AnnotationScaleToZeroRetention}},
		{name: "retention too long", modify: func(s *Spec) { s.ScaleToZeroRetention = 2 * time.Hour }, want: []string{AnnotationScaleToZeroRetention}},
		{name: "up rate", modify: func(s *Spec) { s.MaxScaleUpRate = 1 }, want: []string{SettingMaxScaleUpRate}},
		{name: "down rate", modify: func(s *Spec) { s.MaxScaleDownRate = 0.5 }, want: []string{SettingMaxScaleDownRate}},
		{
			name:   "several at once",
			modify: func(s *Spec) { s.Target, s.MinScale, s.Window = -1, -1, 0 },
			want:   []string{AnnotationTarget, AnnotationMinScale, AnnotationWindow},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSpec()
			tc.modify(&s)
			err := s.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if got := err.Error(); !strings.Contains(got, w) {
					t.Errorf("Validate() = %q, want it to contain %q", got, w)
				}
			}
		})
	}
}

func TestTargetFor(t *testing.T) {
	tests := []struct {
		name        string
		annotated   float64
		cc          int
		utilization float64
		want        float64
	}{
		{name: "annotation wins", annotated: 10, cc: 50, utilization: 0.7, want: 10},
		{name: "container concurrency", cc: 10, utilization: 0.7, want: 7},
		{name: "container concurrency, full utilization", cc: 4, utilization: 1, want: 4},
		{name: "container concurrency, bad utilization", cc: 10, utilization: 0, want: 7},
		{name: "default", want: DefaultTarget},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := TargetFor(tc.annotated, tc.cc, tc.utilization), tc.want; !closeTo(got, want) {
				t.Errorf("TargetFor(%v, %d, %v) = %v, want %v", tc.annotated, tc.cc, tc.utilization, got, want)
			}
		})
	}
}

func TestDefaultSpec(t *testing.T) {
	s := DefaultSpec()
	if err := s.Validate(); err != nil {
		t.Fatalf("DefaultSpec().Validate() = %v, want nil", err)
	}
	if got, want := s.Target, 100.0; got != want {
		t.Errorf("Target = %v, want %v", got, want)
	}
	if got, want := s.Window, 60*time.Second; got != want {
		t.Errorf("Window = %v, want %v", got, want)
	}
	if got, want := s.InitialScale, 1; got != want {
		t.Errorf("InitialScale = %v, want %v", got, want)
	}
}

func closeTo(a, b float64) bool {
	d := a - b
	return d < 1e-9 && d > -1e-9
}
