package inventory

import "testing"

func TestScaledQuantity(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		scale   int64
		want    int64
		wantErr bool
	}{
		{name: "millicores are exact", in: "500m", scale: 1000, want: 500},
		{name: "whole cores scale to millicores", in: "2", scale: 1000, want: 2000},
		{name: "fractional cores scale to millicores", in: "1.5", scale: 1000, want: 1500},
		{name: "binary suffixes are powers of two", in: "4Gi", scale: 1, want: 4294967296},
		{name: "decimal suffixes are powers of ten", in: "1G", scale: 1, want: 1000000000},
		{name: "exponents are accepted", in: "1.5e3", scale: 1, want: 1500},
		{name: "sub-unit values round up", in: "0.1m", scale: 1000, want: 1},
		{name: "a leading dot is accepted", in: ".5", scale: 1000, want: 500},
		{name: "negative values are rejected", in: "-1", scale: 1000, wantErr: true},
		{name: "zero is rejected", in: "0Gi", scale: 1, wantErr: true},
		{name: "lowercase binary suffixes are rejected", in: "4gi", scale: 1, wantErr: true},
		{name: "spaces are rejected", in: "4 Gi", scale: 1, wantErr: true},
		{name: "values beyond int64 are rejected", in: "16Ei", scale: 1, wantErr: true},
		{name: "huge exponents are rejected", in: "1e999", scale: 1, wantErr: true},
		{name: "an empty string is rejected", in: "", scale: 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, msg := scaledQuantity(tt.in, tt.scale, "")
			if (msg != "") != tt.wantErr || got != tt.want {
				t.Errorf("scaledQuantity(%q, %d) = %d, %q; want %d, error %v", tt.in, tt.scale, got, msg, tt.want, tt.wantErr)
			}
		})
	}
}
