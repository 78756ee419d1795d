package main

import (
	"strings"
	"testing"
)

func TestUnifiedDiff(t *testing.T) {
	a := strings.Split("{\n  \"replicas\": 3,\n  \"image\": \"v1\",\n  \"x\": 1\n}", "\n")
	b := strings.Split("{\n  \"replicas\": 5,\n  \"image\": \"v1\",\n  \"x\": 1\n}", "\n")
	got := unifiedDiff("live", "manifest", a, b)
	want := "--- live\n+++ manifest\n@@ -1,5 +1,5 @@\n {\n-  \"replicas\": 3,\n+  \"replicas\": 5,\n   \"image\": \"v1\",\n   \"x\": 1\n }\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	t.Run("a new object is all additions", func(t *testing.T) {
		got := unifiedDiff("live", "manifest", nil, []string{"a", "b"})
		if !strings.Contains(got, "@@ -1,0 +1,2 @@\n+a\n+b\n") {
			t.Fatalf("got\n%s", got)
		}
	})
}

func TestParseRef(t *testing.T) {
	for _, tt := range []struct {
		in, kind, name string
		ok             bool
	}{
		{"deploy/web", "Deployment", "web", true},
		{"deployments/web", "Deployment", "web", true},
		{"svc/api", "Service", "api", true},
		{"web", "", "", false},
		{"deploy/", "", "", false},
		{"pod/x", "Pod", "x", true},
		{"rs/x", "", "", false},
	} {
		kind, name, err := parseRef(tt.in)
		if (err == nil) != tt.ok || kind != tt.kind || name != tt.name {
			t.Errorf("parseRef(%q) = %q, %q, %v", tt.in, kind, name, err)
		}
	}
}
