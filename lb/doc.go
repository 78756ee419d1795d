// Package lb is fleet's embedded load balancer: pools of upstream endpoints,
// balancing policies, passive health checking, and TCP and HTTP/1.1 proxying.
//
// The HTTP path does not use net/http. A request head is parsed in place in
// the client connection's read buffer, rewritten once (hop-by-hop fields
// dropped, X-Forwarded-* added) and written to a kept-alive upstream
// connection; bodies stream through with their framing intact. Buffers come
// from a pool per request and the counters behind the metrics are atomics, so
// a proxied request in steady state allocates nothing and opens no upstream
// connection.
package lb
