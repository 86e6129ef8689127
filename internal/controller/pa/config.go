package pa

import (
	"fmt"
	"strconv"
	"strings"

	"kantai.dev/kantai/internal/placement"
)

// ConfigMapName is the name of kantai's ConfigMap, in the controller's
// namespace.
const ConfigMapName = "config-kantai"

// AutoscalerConfigMapName is Knative's autoscaler ConfigMap, in Knative's
// system namespace.
const AutoscalerConfigMapName = "config-autoscaler"

// Keys of config-kantai.
const (
	// KeyNodeCapacity is the most kantai replicas (of all revisions) a node
	// runs when it has no CapacityAnnotation. Default DefaultNodeCapacity.
	KeyNodeCapacity = "node-capacity"
	// KeyPlacement names the placement policy (package placement).
	// Default "nearest".
	KeyPlacement = "placement"
)

// CapacityAnnotation on a Node overrides config-kantai's node-capacity for
// that node: a whole number >= 0.
const CapacityAnnotation = "kantai.dev/capacity"

// DefaultNodeCapacity is node-capacity when config-kantai does not set it.
const DefaultNodeCapacity = 10

// DefaultPlacement is the placement policy when config-kantai names none.
const DefaultPlacement = "nearest"

// Config is what config-kantai holds.
type Config struct {
	NodeCapacity int
	Placement    string
}

// DefaultConfig is the configuration without a config-kantai ConfigMap.
func DefaultConfig() Config {
	return Config{NodeCapacity: DefaultNodeCapacity, Placement: DefaultPlacement}
}

// ParseConfig reads config-kantai's data over the defaults. Unknown keys
// are ignored; a malformed value is an error naming its key, and the
// default stays in place for it.
func ParseConfig(data map[string]string) (Config, error) {
	c := DefaultConfig()
	var errs []string
	if v, ok := data[KeyNodeCapacity]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			errs = append(errs, fmt.Sprintf("%s %s: %q is not a whole number >= 0", ConfigMapName, KeyNodeCapacity, v))
		} else {
			c.NodeCapacity = n
		}
	}
	if v, ok := data[KeyPlacement]; ok {
		v = strings.TrimSpace(v)
		if _, err := placement.New(v); err != nil {
			errs = append(errs, fmt.Sprintf("%s %s: %v", ConfigMapName, KeyPlacement, err))
		} else {
			c.Placement = v
		}
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return c, nil
}
