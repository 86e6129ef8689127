// Package placement decides on which node each replica of a function runs.
// The autoscaler says how many replicas each origin (the node where demand
// enters) wants; a Policy compares that with the replicas that exist and
// returns a Plan of replicas to add (node and origin) and to remove.
//
// Policies are pure: the nodes with their capacity and use, the function's
// replicas, the wanted counts and a Cost function come in, a Plan comes out.
// Cost(k, j) is the expected response time of a request entering at k and
// served on j, latency(k→j) plus processing(j); for replicas that serve no
// origin (key "") MeanCost uses the mean over all origins.
//
// Policies are chosen by name (New, Names); a new policy is one file and
// one line in the registry map, or a Register call.
//
// # nearest (default)
//
// The seed's per-node scheduler. When origin k wants more replicas than are
// attributed to it, each new one goes to the node j with the smallest
// Cost(k, j) among the nodes with free capacity (capacity minus replicas of
// all functions, minus the adds planned in the same call), ties broken by
// name. When k wants fewer, the surplus goes: unready replicas first, then
// the one on the most expensive node for k, then the newest. Origins short
// of replicas take turns, one replica each, so a small edge node is not
// filled by whichever origin comes first; replicas for "" come last. When
// no node has room the rest are counted in Plan.Unplaced and the caller
// tries again on its next round.
//
// Like the seed, nearest itself is greedy and does not migrate, and
// capacity freed by a Remove is only reused by the next Plan (the caller
// may start adds before removes finish). Moving a replica that another
// node would serve clearly better is done around any policy by the
// control step (package control), with hysteresis and a rate limit.
//
// # spread
//
// The baseline: what Kubernetes' default scheduler does for a plain
// Deployment. It ignores origins when choosing nodes: for the total wanted
// it adds on the node with the fewest replicas of the function (then the
// most free capacity) and removes from the node with the most (unready,
// then newest first). Adds carry the origins that are short so that the
// per-origin accounting balances.
package placement
