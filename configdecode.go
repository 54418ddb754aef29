package main

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// nodeDecoder decodes a parsed YAML document into a Config by walking the document's nodes
// alongside the Go schema: the yaml tags of each struct, ",inline" ones included. Every
// problem is reported with the line of the node it is about and its YAML path, and decoding
// goes on past it, so that one run reports them all. Values are decoded node by node; the
// document is never re-emitted, so each line is the one in the file.
type nodeDecoder struct {
	lookupEnv func(string) (string, bool)

	// problems holds what was found, in the order of the document.
	problems []error
	// broken lists the paths whose value was present but could not be used: whatever Validate
	// finds under them (a required value missing, say) follows from a problem already reported.
	broken []string

	// expanded holds the scalars whose ${VAR} references are replaced, and whether every
	// variable was set.
	expanded map[*yaml.Node]bool
	// entriesOf holds the entries of each mapping read so far, so that each is read, and each
	// of its duplicate keys reported, once however often it is merged or aliased.
	entriesOf map[*yaml.Node][]entry
	// merging holds the mappings being read, against merges that include themselves.
	merging map[*yaml.Node]bool
}

// entry is one key of a mapping and its value.
type entry struct {
	key, value *yaml.Node
	name       string
}

func newNodeDecoder(lookupEnv func(string) (string, bool)) *nodeDecoder {
	return &nodeDecoder{
		lookupEnv: lookupEnv,
		expanded:  make(map[*yaml.Node]bool),
		entriesOf: make(map[*yaml.Node][]entry),
		merging:   make(map[*yaml.Node]bool),
	}
}

// report records a problem with the node n at path.
func (d *nodeDecoder) report(n *yaml.Node, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	d.problems = append(d.problems, fmt.Errorf("line %d: %s", n.Line, msg))
}

// fail records a problem with the value n at path, which is then left unset.
func (d *nodeDecoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.report(n, path, format, args...)
	d.broken = append(d.broken, path)
}

// explains reports whether err, a Validate finding, is about a value that was already reported
// as unusable. Validate starts each message with the YAML path it is about.
func (d *nodeDecoder) explains(err error) bool {
	msg := err.Error()
	for _, p := range d.broken {
		if p == "" {
			return true
		}
		if rest, ok := strings.CutPrefix(msg, p); ok && rest != "" && strings.ContainsRune(":.[", rune(rest[0])) {
			return true
		}
	}
	return false
}

// decode stores the value of n into v, which is addressable.
func (d *nodeDecoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		v.SetZero()
		return
	}
	if u, ok := v.Addr().Interface().(yaml.Unmarshaler); ok {
		d.expandAll(n, path)
		if err := n.Decode(u); err != nil {
			msg := err.Error()
			var te *yaml.TypeError
			if errors.As(err, &te) {
				msg = strings.Join(te.Errors, "; ")
			}
			d.fail(n, path, "%s", msg)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), path)
		v.Set(p)
	default:
		d.decodeScalar(n, v, path)
	}
}

func (d *nodeDecoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected %s, got %s", describeType(v.Type()), describeNode(n))
		return
	}
	fields := yamlFields(v.Type())
	for _, e := range d.entries(n, path) {
		p := joinPath(path, e.name)
		index, ok := fields[e.name]
		if !ok {
			d.report(e.key, p, "unknown key")
			continue
		}
		d.decode(e.value, v.FieldByIndex(index), p)
	}
}

func (d *nodeDecoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected %s, got %s", describeType(v.Type()), describeNode(n))
		return
	}
	m := reflect.MakeMap(v.Type())
	for _, e := range d.entries(n, path) {
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(e.value, elem, joinPath(path, e.name))
		m.SetMapIndex(reflect.ValueOf(e.name).Convert(v.Type().Key()), elem)
	}
	v.Set(m)
}

func (d *nodeDecoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "expected %s, got %s", describeType(v.Type()), describeNode(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, c := range n.Content {
		d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

var durationType = reflect.TypeFor[time.Duration]()

func (d *nodeDecoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "expected %s, got %s", describeType(v.Type()), describeNode(n))
		return
	}
	if !d.expand(n, path) {
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		switch {
		case v.Type() == durationType:
			d.fail(n, path, "invalid duration %q (use a number and a unit, such as 90s, 15m or 12h)", n.Value)
		case v.Kind() == reflect.String:
			// The value may be a secret: it is not repeated.
			d.fail(n, path, "not a valid string")
		default:
			d.fail(n, path, "expected %s, got %q", describeType(v.Type()), n.Value)
		}
	}
}

// entries returns the keys of mapping n in order, with those it merges ("<<: *anchor") after
// them. Keys of n win over merged ones, and a later merged mapping over an earlier one, as the
// YAML decoder has it. A key given twice in n is reported, once, and only its first value kept.
func (d *nodeDecoder) entries(n *yaml.Node, path string) []entry {
	if es, ok := d.entriesOf[n]; ok {
		return es
	}
	d.merging[n] = true
	defer delete(d.merging, n)
	var own, merged []entry
	first := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSources(val, joinPath(path, "<<"))...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.report(k, path, "a key must be a name, not %s", describeNode(k))
			continue
		}
		if f, dup := first[k.Value]; dup {
			d.report(k, joinPath(path, k.Value), "duplicate key (first at line %d)", f.Line)
			continue
		}
		first[k.Value] = k
		own = append(own, entry{key: k, value: val, name: k.Value})
	}
	at := make(map[string]int)
	for _, e := range merged {
		if first[e.name] != nil {
			continue
		}
		if i, ok := at[e.name]; ok {
			own[i] = e
			continue
		}
		at[e.name] = len(own)
		own = append(own, e)
	}
	d.entriesOf[n] = own
	return own
}

// mergeSources returns the entries merged by the value n of a "<<" key: a mapping or a list of
// mappings, usually aliases.
func (d *nodeDecoder) mergeSources(n *yaml.Node, path string) []entry {
	sources := []*yaml.Node{n}
	if r := resolve(n); r.Kind == yaml.SequenceNode {
		sources = r.Content
	}
	var es []entry
	for _, s := range sources {
		m := resolve(s)
		switch {
		case m.Kind != yaml.MappingNode:
			d.report(s, path, "expected a mapping or a list of mappings to merge, got %s", describeNode(m))
		case d.merging[m]:
			d.report(s, path, "a mapping cannot merge itself")
		default:
			es = append(es, d.entries(m, path)...)
		}
	}
	return es
}

// envRef matches a reference to an environment variable in a value: ${NAME}, or
// ${NAME:-default}, whose default (any text but "}", taken as written) stands in for a variable
// that is unset or empty.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`)

// expand replaces each ${VAR} in the scalar n with the variable's value, once however many
// times n is used. Expansion happens after parsing, so a value cannot change the document's
// structure, and an expanded value stays a string. An unset variable without a default is
// reported (a set but empty one expands to ""); expand returns false then.
func (d *nodeDecoder) expand(n *yaml.Node, path string) bool {
	if ok, done := d.expanded[n]; done {
		if !ok {
			d.broken = append(d.broken, path)
		}
		return ok
	}
	ok := true
	if strings.Contains(n.Value, "${") {
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			name, def, hasDefault := strings.Cut(ref[2:len(ref)-1], ":-")
			v, set := d.lookupEnv(name)
			switch {
			case hasDefault && v == "":
				return def
			case !set:
				d.fail(n, path, "environment variable %s is not set", name)
				ok = false
			}
			return v
		})
		n.Tag = "!!str"
	}
	d.expanded[n] = ok
	return ok
}

// expandAll expands every scalar under n, for a value decoded whole by its own UnmarshalYAML.
func (d *nodeDecoder) expandAll(n *yaml.Node, path string) {
	n = resolve(n)
	switch n.Kind {
	case yaml.ScalarNode:
		d.expand(n, path)
	case yaml.SequenceNode:
		if _, done := d.expanded[n]; done {
			return
		}
		d.expanded[n] = true
		for i, c := range n.Content {
			d.expandAll(c, fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// yamlFields maps each key of struct type t to the index of its field, with the fields of
// ",inline" structs as keys of t itself. A field without a yaml tag has its lower-cased name as
// key, and unexported fields and those tagged "-" have none.
func yamlFields(t reflect.Type) map[string][]int {
	fields := make(map[string][]int)
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(","+opts+",", ",inline,") && f.Type.Kind() == reflect.Struct {
			for k, index := range yamlFields(f.Type) {
				fields[k] = append([]int{i}, index...)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = []int{i}
	}
	return fields
}

// describeType names what a value of type t looks like in YAML.
func describeType(t reflect.Type) string {
	if t == durationType {
		return "a duration"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Pointer:
		return describeType(t.Elem())
	}
	return "another kind of value"
}

// describeNode names the kind of n without repeating its value, which may be a secret.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "true or false"
	case "!!null":
		return "nothing"
	}
	return "a string"
}

// joinPath appends key to a YAML path. A key that is not a plain name is quoted, so that the
// path still reads as one.
func joinPath(path, key string) string {
	plain := key != "" && !strings.ContainsFunc(key, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("_-/<", r)
	})
	if !plain {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}
