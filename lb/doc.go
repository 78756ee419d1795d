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
//
// A pool may send a share of its requests to canary endpoints
// (Pool.SetWeighted) and counts requests, errors and latencies per endpoint
// (Pool.Stats), for a rollout to judge the canary by.
//
// An HTTP route may terminate TLS (Route.TLS), serving HTTP/1.1 clients
// itself and handing connections that negotiate another protocol, such as
// HTTP/2, to a server of the caller's (Route.Other); and it may pick the pool
// per request from the Host and path (Route.Router) after an optional
// redirect (Route.Redirect), which is how fleet's Ingress listeners use it.
package lb
