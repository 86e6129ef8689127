// Package linkemu emulates network links in user space: latency, jitter and
// bandwidth between the nodes of a fleet that all live on one machine, each
// on its own loopback address, without netem or any kernel support.
//
// # Model
//
// A Link has a mean round-trip time, a round-trip standard deviation
// (jitter) and a rate. Each direction of a connection delays every chunk of
// bytes by a one-way delay drawn from a normal distribution with mean RTT/2
// and standard deviation Jitter/√2, clamped at zero; a request and its
// answer thus take RTT ± Jitter, as the testbed describes links. The rate is
// applied as serialisation time: a chunk of n bytes occupies the link for
// n/BytesPerSec after the chunks before it, and only then starts its
// one-way delay.
//
// Jitter must not reorder a byte stream. A chunk's delivery time is
// therefore the later of its own (send time + serialisation + sampled
// delay) and the previous chunk's delivery time. When chunks follow each
// other closely this shifts their delays towards the upper tail of the
// distribution, much like head-of-line blocking on a real path; request and
// answer exchanges, which are what the platform measures, see the
// distribution as configured.
//
// # Who applies the delay
//
// Only one end of a connection may add the link, or the path would count
// twice. The dialling side does, in both directions: Wrap delays what it
// writes and holds back what it reads. Listeners (gateways, replicas,
// agents) need no change and stay plain net.Listeners; programs in the fleet
// process pick the link by dialling through Network.Dialer, which also binds
// the connection to the dialling node's address so servers see where it
// comes from and charges one round trip for connection setup, as a TCP
// handshake would. Programs outside the fleet process reach a remote node
// through a Proxy, which listens on their node's address and dials onward
// the same way.
//
// # Changes at run time
//
// Network.SetLink may change a link while connections are open: each chunk
// draws its delay and rate from the link as it is when the chunk is sent.
// Network.SetCut cuts a link and Network.SetDown takes a node down: dials
// across fail at once with ErrUnreachable (a *net.OpError with Op "dial",
// as a refused connection is), and the connections open across are broken,
// their reads and writes failing with ErrUnreachable and the peer seeing a
// reset. Connections over a zero link are plain and are not tracked, so a
// cut does not break those already open.
//
// Emulated delays run slightly longer than configured, never shorter. Go's
// timers round waits up to whole milliseconds (a 1 ms link measured 2.4 ms
// RTT with them), so on Linux delays wait on a timerfd alarm clock instead
// and spin for their last 100 µs; a 1 ms link then measures about 1.1 ms
// and a 50 ms link about 51 ms on a busy 2-core machine
// (BenchmarkLinkRTT prints configured against measured).
// KANTAI_LINKEMU_GO_TIMERS=1 in the environment makes a process use Go's
// timers instead, to compare.
package linkemu
