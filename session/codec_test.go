package session

import (
	"reflect"
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

// TestCodecGroups: a session's groups survive the cookie, and a session sealed before groups
// existed still opens, with none.
func TestCodecGroups(t *testing.T) {
	now := time.Unix(1700000000, 0)
	enc := binaryEncoder{}
	s := realisticSession(now)
	old, err := enc.Serialize(s)
	if err != nil {
		t.Fatal(err)
	}
	s.Groups = []string{"dev", "ops, infra", "", "gr\u00fcn"}
	b, err := enc.Serialize(s)
	if err != nil {
		t.Fatal(err)
	}
	var got Session
	if err := enc.Deserialize(b, &got); err != nil || !reflect.DeepEqual(&got, s) {
		t.Errorf("got %+v, %v, want %+v", got, err, *s)
	}
	got = Session{}
	if err := enc.Deserialize(old, &got); err != nil || got.Groups != nil || got.Subject != s.Subject {
		t.Errorf("a session sealed without groups: got %+v, %v", got, err)
	}
	for name, b := range map[string][]byte{
		"flag without groups": setFlag(t, old),
		"zero groups":         append(setFlag(t, old), 0),
		"count past the end":  append(setFlag(t, old), 5, 1, 'a'),
	} {
		if err := enc.Deserialize(b, &got); err == nil {
			t.Errorf("%s: got nil, want an error", name)
		}
	}
}

// setFlag returns a copy of a session payload without groups whose flags byte says it has some.
func setFlag(t *testing.T, b []byte) []byte {
	t.Helper()
	d := decoder{b: b[1:]}
	for range 6 {
		d.string()
	}
	i := len(b) - len(d.b)
	out := append([]byte{}, b...)
	out[i] |= flagGroups
	return out
}

func FuzzDeserialize(f *testing.F) {
	b, _ := binaryEncoder{}.Serialize(realisticSession(time.Unix(1700000000, 0)))
	f.Add(b)
	f.Add([]byte{kindLogin, 1, 'x', 0, 0, 0, 2})
	withGroups := realisticSession(time.Unix(1700000000, 0))
	withGroups.Groups = []string{"dev", "ops"}
	b, _ = binaryEncoder{}.Serialize(withGroups)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Session
		if (binaryEncoder{}).Deserialize(b, &s) == nil {
			again, err := binaryEncoder{}.Serialize(&s)
			if err != nil {
				t.Fatal(err)
			}
			var s2 Session
			if err := (binaryEncoder{}).Deserialize(again, &s2); err != nil || !reflect.DeepEqual(s2, s) {
				t.Errorf("got %+v, %v after a round trip, want %+v", s2, err, s)
			}
		}
		var l Login
		_ = binaryEncoder{}.Deserialize(b, &l)
	})
}
