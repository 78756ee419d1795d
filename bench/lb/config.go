package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// nginxCommon keeps every path nginx would otherwise take from its
// compiled-in defaults (/var/log/nginx, /var/lib/nginx, /run) inside the
// prefix, so the benchmark's nginx never touches the system's.
const nginxCommon = `worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
`

const nginxHTTPCommon = `
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
`

// backendConf is the one nginx behind every proxy: the same answers on
// two ports, and stub_status on a third, whose accepts count the
// upstream connections the proxies open. The bodies come from return, not
// files: open and sendfile per request made the backend ~40% dearer, and
// the backend shares cpu0 with wrk. A config token is at most 4 KiB, so
// the 4 KiB body is four 1 KiB map values.
func backendConf(prefix string, ports [2]int, status int) string {
	return fmt.Sprintf(nginxCommon, prefix) + fmt.Sprintf(`http {`+nginxHTTPCommon+`
    default_type application/octet-stream;
    map "" $kib { default "%[5]s"; }
    server {
        listen 127.0.0.1:%[2]d;
        listen 127.0.0.1:%[3]d;
        location = /64 { return 200 "%[6]s"; }
        location = /4k { return 200 "$kib$kib$kib$kib"; }
    }
    server {
        listen 127.0.0.1:%[4]d;
        location = /status { stub_status; }
    }
}
`, prefix, ports[0], ports[1], status, strings.Repeat("x", 1024), strings.Repeat("x", 64))
}

// nginxProxyConf is nginx as the reverse proxy, with an upstream
// keep-alive cache. The upstream's keepalive_requests is raised like
// the backend's: its default (1000) would close each upstream connection
// every few seconds under this load, which is a setting, not a cost.
// With cert it terminates TLS instead, offering HTTP/2 as fleet does
// (wrk asks for no protocol, so both answer HTTP/1.1), with nginx's
// defaults for session caching and tickets.
func nginxProxyConf(prefix string, listen int, backends []string, cert *certFiles) string {
	var servers strings.Builder
	for _, b := range backends {
		fmt.Fprintf(&servers, "        server %s;\n", b)
	}
	listenConf := fmt.Sprintf("listen 127.0.0.1:%d;", listen)
	if cert != nil {
		listenConf = fmt.Sprintf(`listen 127.0.0.1:%d ssl http2;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_protocols TLSv1.3 TLSv1.2;`, listen, cert.cert, cert.key)
	}
	return fmt.Sprintf(nginxCommon, prefix) + fmt.Sprintf(`http {`+nginxHTTPCommon+`
    upstream backends {
%[3]s        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        %[2]s
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`, prefix, listenConf, servers.String())
}

// haproxyConf is HAProxy as the reverse proxy: one thread, connections
// to the backends shared between clients (http-reuse always), no logs.
// With cert it terminates TLS, offering HTTP/2 like the others.
func haproxyConf(listen int, backends []string, cert *certFiles) string {
	var servers strings.Builder
	for i, b := range backends {
		fmt.Fprintf(&servers, "    server b%d %s\n", i+1, b)
	}
	bind := addr(listen)
	if cert != nil {
		bind += " ssl crt " + cert.combined + " alpn h2,http/1.1"
	}
	return fmt.Sprintf(`global
    nbthread 1

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend bench
    bind %s
    default_backend backends

backend backends
    balance roundrobin
%s`, bind, servers.String())
}

// writeNginxPrefix lays out an nginx prefix directory: the config and
// the temp dirs.
func writeNginxPrefix(prefix, conf string) error {
	if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(prefix, "nginx.conf"), []byte(conf), 0o644)
}
