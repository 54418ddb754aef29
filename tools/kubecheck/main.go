// Command kubecheck validates Kubernetes manifests offline against the API's own Go types: each
// document of each *.yaml file in a directory is decoded strictly into the k8s.io/api struct of
// its apiVersion and kind (an unknown or misspelled field, a duplicate key or a value of the
// wrong type is an error), and the objects are then checked against each other and against
// what headgate needs (see check.go). It prints every problem and exits 1 when there is any.
//
//	cd tools/kubecheck && go run . ../../deploy/kubernetes
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kubecheck:", err)
		os.Exit(1)
	}
}

// run checks the manifests in the directory named by args and reports on stdout.
func run(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: kubecheck DIRECTORY")
	}
	objs, err := load(args[0])
	if err != nil {
		return err
	}
	if err := check(objs); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d objects in %s: OK\n", len(objs), args[0])
	return nil
}

// object is one decoded manifest document: obj is a pointer to its k8s.io/api type.
type object struct {
	where string // file:document
	kind  string
	obj   any
}

// newObject returns a pointer to the typed struct of apiVersion/kind, or nil for a kind the
// manifests may not use.
func newObject(kind string) any {
	switch kind {
	case "v1/ConfigMap":
		return new(corev1.ConfigMap)
	case "v1/Secret":
		return new(corev1.Secret)
	case "v1/Service":
		return new(corev1.Service)
	case "apps/v1/Deployment":
		return new(appsv1.Deployment)
	case "policy/v1/PodDisruptionBudget":
		return new(policyv1.PodDisruptionBudget)
	case "networking.k8s.io/v1/NetworkPolicy":
		return new(networkingv1.NetworkPolicy)
	}
	return nil
}

// load decodes every document of every *.yaml file in dir, reporting all problems at once.
func load(dir string) ([]object, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no *.yaml files", dir)
	}
	slices.Sort(files)
	var (
		objs []object
		errs []error
	)
	for _, file := range files {
		docs, err := documents(file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for i, doc := range docs {
			where := fmt.Sprintf("%s:%d", filepath.Base(file), i+1)
			o, err := decode(where, doc)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			objs = append(objs, o)
		}
	}
	return objs, errors.Join(errs...)
}

// documents splits a YAML file into its non-empty documents.
func documents(file string) ([][]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(probe) > 0 {
			docs = append(docs, bytes.Clone(doc))
		}
	}
}

// decode reads the type of doc from its apiVersion and kind and decodes it strictly into that
// type.
func decode(where string, doc []byte) (object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return object{}, fmt.Errorf("%s: %w", where, err)
	}
	kind := tm.APIVersion + "/" + tm.Kind
	obj := newObject(kind)
	if obj == nil {
		return object{}, fmt.Errorf("%s: apiVersion %q kind %q: not a kind kubecheck knows", where, tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return object{}, fmt.Errorf("%s: %s: %w", where, tm.Kind, err)
	}
	return object{where: where, kind: tm.Kind, obj: obj}, nil
}
