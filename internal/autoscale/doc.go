// Package autoscale decides how many replicas a function needs, per origin:
// the node where the demand enters the platform. It follows the Knative Pod
// Autoscaler (KPA) and reads Knative's annotations with Knative's defaults,
// but scales the demand arriving at each gateway separately, as the seed's
// modified autoscaler did, so placement can put each replica near its
// demand.
//
// The package is pure decision logic: no goroutines, no I/O, no clock.
// Callers feed observations with Record and ask for a Decision with Decide,
// passing the time with every call.
//
// # The rule
//
// Each origin's reports (average concurrency over about one second) go into
// one-second buckets. For each origin k:
//
//	stable_k = mean over the last Window seconds
//	panic_k  = mean over the last Window×PanicWindowPercentage/100 seconds
//	want_k   = ceil(stable_k / Target), at least 1 while k showed demand
//	           within the last Window, 0 once a whole Window has passed
//	           without any
//
// Until a whole window of data exists the means divide by the seconds seen
// so far, as KPA does, so a new function is not diluted. A second without a
// report takes the previous second's value, so a late report or the
// current, not yet reported second does not read as a drop; an origin that
// stays silent counts as zero.
//
// Panic mode starts, as in KPA, when Σ ceil(panic_k/Target) divided by the
// ready replicas (at least 1) reaches PanicThresholdPercentage/100. In
// panic mode each origin's count is the largest panic count seen since the
// panic began, starting from the previous decision, so no origin loses a
// replica; panic ends once a stable window has passed since the condition
// last held. This is the KPA's hysteresis: quick to scale up on the short
// window, slow to scale down on the long one.
//
// The total then goes through KPA's rate limits: at most
// ceil(ready×MaxScaleUpRate) and at least floor(ready/MaxScaleDownRate)
// replicas (ready counted as at least 1). Trimming takes replicas from the
// origins with the least demand first; restoring gives back replicas the
// previous decision had, busiest origin first.
//
// # Scale to zero
//
// The decision to go to zero is due one Window after the last report above
// zero from any origin (or after creation, when there was none): the
// Autoscaler keeps the time of that report, so the moment is exact to the
// nanosecond rather than to the bucket. From then on the last replica stays
// for ScaleToZeroRetention more, counted for the origin that last showed
// demand (so placement does not move it), and only if there was a replica
// to keep. Knative's scale-to-zero grace period (time for the activator to
// take over the route) is the gateway's business in kantai and is not
// modelled here.
//
// # Bounds
//
// Until one Window has passed since creation the total is at least
// InitialScale; below MinScale the missing replicas are added. Both kinds
// serve no origin and appear under the key Unattributed (""). Above
// MaxScale replicas are taken from the origins with the least demand first
// ("" has none). Decision.Total is always the sum of Decision.PerOrigin.
//
// # Differences from Knative
//
//   - Rounding per origin: the total can exceed ceil(Σ stable_k / Target)
//     by up to one replica per origin with demand. That is the price of
//     having a replica near each origin.
//   - Spec.Target is the effective per-replica target and is used as given;
//     TargetFor applies TargetUtilization to containerConcurrency only.
//     Knative also multiplies an explicit target annotation by the
//     utilization.
//   - Panic mode is decided for the whole function, since ready replicas
//     are counted per function; the per-origin counts only grow while it
//     lasts.
//   - The scale-down delay and target-burst-capacity annotations are not
//     handled here.
package autoscale
