package reconciler

import (
	"os"
	"testing"

	"github.com/fleetdev/fleet/spec"
)

func TestHostPathCheck_Mismatch(t *testing.T) {
	for _, tt := range []struct {
		typ  string
		mode os.FileMode
		want string
	}{
		{"Directory", os.ModeDir | 0o755, ""},
		{"DirectoryOrCreate", 0o644, "/p is a file, not a directory"},
		{"File", 0o644, ""},
		{"FileOrCreate", os.ModeDir, "/p is a directory, not a file"},
		{"Socket", os.ModeSocket, ""},
		{"Socket", 0o644, "/p is a file, not a UNIX socket"},
		{"CharDevice", os.ModeDevice | os.ModeCharDevice, ""},
		{"BlockDevice", os.ModeDevice | os.ModeCharDevice, "/p is a character device, not a block device"},
		{"BlockDevice", os.ModeDevice, ""},
		{"", os.ModeNamedPipe, ""},
	} {
		c := hostPathCheck{volume: "v", HostPathVolume: spec.HostPathVolume{Path: "/p", Type: tt.typ}}
		if got := c.mismatch(tt.mode); got != tt.want {
			t.Errorf("%s, mode %s: %q, want %q", tt.typ, tt.mode, got, tt.want)
		}
	}
}
