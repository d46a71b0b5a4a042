package istio

import (
	"strings"
	"testing"
)

// goldenUUID is the uuid half of a nonce from the captures.
const goldenUUID = "260b9beb-7a1c-42cc-9707-6a0b50926d5f"

func TestPushVersion(t *testing.T) {
	tests := []struct {
		name, nonce string
		want        string
		wantErr     string
	}{
		{name: "empty: nothing sent or acked", nonce: "", want: ""},
		{name: "golden nonce", nonce: "2026-11-25T15:33:06Z/2" + goldenUUID, want: "2026-11-25T15:33:06Z/2"},
		{name: "multi-digit counter", nonce: "2026-11-25T15:33:06Z/1234" + goldenUUID, want: "2026-11-25T15:33:06Z/1234"},
		{name: "local time offset", nonce: "2026-11-25T16:33:06+01:00/7" + goldenUUID, want: "2026-11-25T16:33:06+01:00/7"},
		{name: "upper-case uuid", nonce: "2026-11-25T15:33:06Z/2" + strings.ToUpper(goldenUUID), want: "2026-11-25T15:33:06Z/2"},
		{
			name:    "shorter than a uuid",
			nonce:   "abc",
			wantErr: `nonce "abc" has no push version before its 36-character uuid`,
		},
		{
			name:    "one short of a uuid",
			nonce:   goldenUUID[1:],
			wantErr: `nonce "60b9beb-7a1c-42cc-9707-6a0b50926d5f" has no push version before its 36-character uuid`,
		},
		{
			name:    "exactly a uuid",
			nonce:   goldenUUID,
			wantErr: `nonce "260b9beb-7a1c-42cc-9707-6a0b50926d5f" has no push version before its 36-character uuid`,
		},
		{
			name:    "uuid with a separator",
			nonce:   "2026-11-25T15:33:06Z/2-" + goldenUUID,
			wantErr: `nonce "2026-11-25T15:33:06Z/2-260b9beb-7a1c-42cc-9707-6a0b50926d5f": push version "2026-11-25T15:33:06Z/2-": bad counter: invalid syntax`,
		},
		{
			name:    "not a uuid",
			nonce:   "2026-11-25T15:33:06Z/2" + strings.Repeat("x", 36),
			wantErr: `nonce "2026-11-25T15:33:06Z/2xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" does not end in a uuid`,
		},
		{
			name:    "uuid hyphens misplaced",
			nonce:   "2026-11-25T15:33:06Z/2" + "260b9bebb-7a1c-42cc-9707-6a0b50926d5",
			wantErr: `nonce "2026-11-25T15:33:06Z/2260b9bebb-7a1c-42cc-9707-6a0b50926d5" does not end in a uuid`,
		},
		{
			name:    "no counter",
			nonce:   "2026-11-25T15:33:06Z" + goldenUUID,
			wantErr: `nonce "2026-11-25T15:33:06Z260b9beb-7a1c-42cc-9707-6a0b50926d5f": push version "2026-11-25T15:33:06Z" has no '/'`,
		},
		{
			name:    "empty counter",
			nonce:   "2026-11-25T15:33:06Z/" + goldenUUID,
			wantErr: `nonce "2026-11-25T15:33:06Z/260b9beb-7a1c-42cc-9707-6a0b50926d5f": push version "2026-11-25T15:33:06Z/": bad counter: invalid syntax`,
		},
		{
			name:    "negative counter",
			nonce:   "2026-11-25T15:33:06Z/-1" + goldenUUID,
			wantErr: `nonce "2026-11-25T15:33:06Z/-1260b9beb-7a1c-42cc-9707-6a0b50926d5f": push version "2026-11-25T15:33:06Z/-1": bad counter: invalid syntax`,
		},
		{
			name:    "not a time",
			nonce:   "yesterday/2" + goldenUUID,
			wantErr: `nonce "yesterday/2260b9beb-7a1c-42cc-9707-6a0b50926d5f": push version "yesterday/2": bad time: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`,
		},
		{
			name:    "too long",
			nonce:   strings.Repeat("9", 101),
			wantErr: `nonce of 101 bytes is longer than a push version and a uuid`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PushVersion(tt.nonce)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("PushVersion(%q) error = %v\nwant %s", tt.nonce, err, tt.wantErr)
				}
				if got != "" {
					t.Errorf("PushVersion(%q) = %q with an error", tt.nonce, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("PushVersion(%q) = %q, %v; want %q", tt.nonce, got, err, tt.want)
			}
		})
	}
}

func FuzzPushVersion(f *testing.F) {
	for _, s := range []string{
		"",
		"2026-11-25T15:33:06Z/2" + goldenUUID,
		"2026-11-25T16:33:06.5+01:00/18446744073709551615" + goldenUUID,
		goldenUUID,
		goldenUUID[1:],
		"2026-11-25T15:33:06Z/" + goldenUUID,
		"/" + goldenUUID,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, nonce string) {
		v, err := PushVersion(nonce)
		switch {
		case err != nil:
			if v != "" {
				t.Fatalf("PushVersion(%q) = %q with error %v", nonce, v, err)
			}
		case nonce == "":
			if v != "" {
				t.Fatalf("PushVersion(\"\") = %q", v)
			}
		default:
			cut := len(nonce) - synczUUIDLen
			if cut <= 0 || v != nonce[:cut] || !isUUID(nonce[cut:]) {
				t.Fatalf("PushVersion(%q) = %q, not the nonce minus its uuid", nonce, v)
			}
			if err := checkPushVersion(v); err != nil {
				t.Fatalf("PushVersion(%q) = %q: %v", nonce, v, err)
			}
		}
		// Treating the input as a version: istiod's nonce for it must give it back.
		back, err := PushVersion(nonce + goldenUUID)
		if valid := nonce != "" && checkPushVersion(nonce) == nil; valid != (err == nil) || valid && back != nonce {
			t.Fatalf("PushVersion(%q + uuid) = %q, %v; version check says valid=%v", nonce, back, err, valid)
		}
	})
}
