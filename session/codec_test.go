package session

import (
	"testing"
	"time"
)

func TestCodecRejectsMalformed(t *testing.T) {
	now := time.Now()
	enc := binaryEncoder{}
	sb, err := enc.Serialize(realisticSession(now))
	if err != nil {
		t.Fatal(err)
	}
	lb, err := enc.Serialize(&Login{State: "s", Created: now})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"empty":          nil,
		"truncated":      sb[:len(sb)-3],
		"trailing bytes": append(append([]byte{}, sb...), 0),
		"login":          lb,
		"huge length":    {kindSession, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		var s Session
		if err := enc.Deserialize(b, &s); err == nil {
			t.Errorf("%s: got nil, want an error", name)
		}
	}
	var l Login
	if err := enc.Deserialize(sb, &l); err == nil {
		t.Error("session as login: got nil, want an error")
	}
	if _, err := enc.Serialize("string"); err == nil {
		t.Error("serializing a string: got nil, want an error")
	}
}

func FuzzDeserialize(f *testing.F) {
	b, _ := binaryEncoder{}.Serialize(realisticSession(time.Unix(1700000000, 0)))
	f.Add(b)
	f.Add([]byte{kindLogin, 1, 'x', 0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Session
		if (binaryEncoder{}).Deserialize(b, &s) == nil {
			again, err := binaryEncoder{}.Serialize(&s)
			if err != nil {
				t.Fatal(err)
			}
			var s2 Session
			if err := (binaryEncoder{}).Deserialize(again, &s2); err != nil || s2 != s {
				t.Errorf("got %+v, %v after a round trip, want %+v", s2, err, s)
			}
		}
		var l Login
		_ = binaryEncoder{}.Deserialize(b, &l)
	})
}
