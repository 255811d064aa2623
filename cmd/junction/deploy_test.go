package main

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/api/services"
)

// The image every service of the manifests runs.
const junctionImage = "ghcr.io/junction-go/junction"

// manifests is one overlay built by kustomize and decoded strictly into
// the Kubernetes types: a field the API does not know fails the decoding.
type manifests struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	accounts     map[string]*corev1.ServiceAccount
	secrets      map[string]*corev1.Secret
	configMaps   map[string]*corev1.ConfigMap
	budgets      []*policyv1.PodDisruptionBudget
	autoscalers  map[string]*autoscalingv2.HorizontalPodAutoscaler
	policies     []*networkingv1.NetworkPolicy
	certificates []*certificate
	namespaces   []*corev1.Namespace
}

// crdMeta is the metadata of a cert-manager object.
type crdMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
}

// certificate is the part of cert-manager's Certificate the manifests use
// (cert-manager's API is not in k8s.io/api); unknown fields fail too.
type certificate struct {
	APIVersion string  `json:"apiVersion"`
	Kind       string  `json:"kind"`
	Metadata   crdMeta `json:"metadata"`
	Spec       struct {
		SecretName  string   `json:"secretName"`
		IsCA        bool     `json:"isCA"`
		CommonName  string   `json:"commonName"`
		Duration    string   `json:"duration"`
		RenewBefore string   `json:"renewBefore"`
		URIs        []string `json:"uris"`
		DNSNames    []string `json:"dnsNames"`
		PrivateKey  struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			Encoding       string `json:"encoding"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
		Usages    []string `json:"usages"`
		IssuerRef struct {
			Name string `json:"name"`
			Kind string `json:"kind"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

// issuer is cert-manager's Issuer, as the manifests use it.
type issuer struct {
	APIVersion string  `json:"apiVersion"`
	Kind       string  `json:"kind"`
	Metadata   crdMeta `json:"metadata"`
	Spec       struct {
		SelfSigned *struct{} `json:"selfSigned"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca"`
	} `json:"spec"`
}

// build runs kubectl kustomize on overlay and decodes what it prints.
func build(t *testing.T, overlay string) *manifests {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		if os.Getenv("JUNCTION_REQUIRE_ALL") == "1" {
			t.Fatal("kubectl is required (JUNCTION_REQUIRE_ALL=1) to build the manifests")
		}
		t.Skip("no kubectl on this machine: the manifests are not built")
	}
	out, err := exec.Command(kubectl, "kustomize", filepath.Join("..", "..", "deploy", "k8s", "overlays", overlay)).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("kubectl kustomize %s: %v\n%s", overlay, err, stderr)
	}
	m := &manifests{deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{}, services: map[string]*corev1.Service{},
		accounts: map[string]*corev1.ServiceAccount{}, secrets: map[string]*corev1.Secret{}, configMaps: map[string]*corev1.ConfigMap{}, autoscalers: map[string]*autoscalingv2.HorizontalPodAutoscaler{}}
	issuers := map[string]*issuer{}
	for doc := range strings.SplitSeq(string(out), "\n---\n") {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("%s: %v", overlay, err)
		}
		if head.Kind != "Namespace" && head.Metadata.Namespace != "junction" {
			t.Errorf("%s %s is in namespace %q, want junction (the services' DNS suffix names it)", head.Kind, head.Metadata.Name, head.Metadata.Namespace)
		}
		decode := func(v any) {
			t.Helper()
			if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
				t.Errorf("%s: %s %s: %v", overlay, head.Kind, head.Metadata.Name, err)
			}
		}
		name := head.Metadata.Name
		switch head.Kind {
		case "Deployment":
			m.deployments[name] = decoded[appsv1.Deployment](decode)
		case "StatefulSet":
			m.statefulSets[name] = decoded[appsv1.StatefulSet](decode)
		case "Service":
			m.services[name] = decoded[corev1.Service](decode)
		case "ServiceAccount":
			m.accounts[name] = decoded[corev1.ServiceAccount](decode)
		case "Secret":
			m.secrets[name] = decoded[corev1.Secret](decode)
		case "ConfigMap":
			m.configMaps[name] = decoded[corev1.ConfigMap](decode)
		case "PodDisruptionBudget":
			m.budgets = append(m.budgets, decoded[policyv1.PodDisruptionBudget](decode))
		case "HorizontalPodAutoscaler":
			v := decoded[autoscalingv2.HorizontalPodAutoscaler](decode)
			m.autoscalers[v.Spec.ScaleTargetRef.Name] = v
		case "NetworkPolicy":
			m.policies = append(m.policies, decoded[networkingv1.NetworkPolicy](decode))
		case "Certificate":
			m.certificates = append(m.certificates, decoded[certificate](decode))
		case "Issuer":
			issuers[name] = decoded[issuer](decode)
		case "Namespace":
			m.namespaces = append(m.namespaces, decoded[corev1.Namespace](decode))
		default:
			t.Errorf("%s: a %s (%s) that the policy test does not check", overlay, head.Kind, head.Metadata.Name)
		}
	}
	for _, c := range m.certificates {
		if issuers[c.Spec.IssuerRef.Name] == nil || c.Spec.IssuerRef.Kind != "Issuer" {
			t.Errorf("certificate %s: issuer %s %q is not in the manifests", c.Metadata.Name, c.Spec.IssuerRef.Kind, c.Spec.IssuerRef.Name)
		}
	}
	return m
}

// decoded is a new T filled by decode.
func decoded[T any](decode func(any)) *T {
	v := new(T)
	decode(v)
	return v
}

// serveVariables are the environment variables junction serve reads.
func serveVariables(t *testing.T) map[string]bool {
	t.Helper()
	serve, _, err := newRoot(env(nil), io.Discard, io.Discard).Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	serve.Flags().VisitAll(func(f *pflag.Flag) {
		for _, k := range f.Annotations[envKey] {
			out[k] = true
		}
	})
	return out
}

// edge is a connection one workload may open to another's named port.
type edge struct{ from, to, port string }

func (e edge) String() string { return e.from + " -> " + e.to + ":" + e.port }

// wantEdges are the communication map's edges between what the manifests
// run, from the code's own tables: the call table (HTTP routes and RPCs,
// who may call them), the broker's clients (every service that stores or
// publishes or follows events), the databases (every service that
// stores), and the broker nodes among themselves when it is a cluster.
func wantEdges(m *manifests) map[edge]bool {
	want := map[edge]bool{}
	for to := range m.deployments {
		for _, call := range services.Calls(to) {
			port := "http"
			if isRPCPattern(call.Pattern) {
				port = "grpc"
			}
			for _, from := range call.Callers {
				if _, deployed := m.deployments[from]; deployed && from != to {
					want[edge{from, to, port}] = true
				}
			}
		}
	}
	for _, s := range serviceTable {
		_, publishes := events.Publishers[s.name]
		_, follows := events.LiveFollowers[s.name]
		if _, deployed := m.deployments[s.name]; deployed && (s.stores || publishes || follows) {
			want[edge{s.name, services.Broker, "client"}] = true
		}
		if s.stores {
			want[edge{s.name, "postgres", "postgres"}] = true
		}
	}
	if b := m.statefulSets[services.Broker]; b != nil && *b.Spec.Replicas > 1 {
		want[edge{services.Broker, services.Broker, "cluster"}] = true
	}
	return want
}

func isRPCPattern(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	svc, _, ok := strings.Cut(p[1:], "/")
	return ok && strings.Contains(svc, ".")
}

// TestKubernetesManifests builds every overlay and checks what a hardened
// deployment needs, against the code: probes on the real endpoints and
// ports, only variables junction serve reads, a certificate of each
// service's own identity, resources, budgets, autoscalers, security
// contexts, and NetworkPolicies that allow exactly the communication map.
func TestKubernetesManifests(t *testing.T) {
	vars := serveVariables(t)
	for _, overlay := range []string{"default", "kafka", "rabbitmq", "activemq"} {
		t.Run(overlay, func(t *testing.T) {
			m := build(t, overlay)
			checkWorkloads(t, m, vars)
			checkNetworkPolicies(t, m)
			checkBrokerAndDatabases(t, m)
		})
	}
}

func checkWorkloads(t *testing.T, m *manifests, vars map[string]bool) {
	t.Helper()
	if len(m.namespaces) != 1 || m.namespaces[0].Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("want one namespace under the restricted Pod Security Standard")
	}
	for _, s := range serviceTable {
		switch s.name {
		case services.Registry, services.Broker:
			if m.deployments[s.name] != nil {
				t.Errorf("%s is deployed: the manifests use DNS discovery and a broker of their own", s.name)
			}
		default:
			if m.deployments[s.name] == nil {
				t.Errorf("%s is not deployed", s.name)
			}
		}
	}
	type workload struct {
		kind, name string
		labels     map[string]string
		pod        corev1.PodTemplateSpec
	}
	var all []workload
	for _, d := range m.deployments {
		all = append(all, workload{"Deployment", d.Name, d.Spec.Selector.MatchLabels, d.Spec.Template})
		if s, ok := serviceNamed(d.Name); ok && s.scales && d.Name != services.PaymentProvider {
			h := m.autoscalers[d.Name]
			if h == nil || h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
				t.Errorf("%s scales but has no autoscaler from at least 2 replicas", d.Name)
			}
		}
	}
	for _, s := range m.statefulSets {
		all = append(all, workload{"StatefulSet", s.Name, s.Spec.Selector.MatchLabels, s.Spec.Template})
	}
	for _, w := range all {
		where := w.kind + " " + w.name
		pod := w.pod.Spec
		if !cmp.Equal(w.pod.Labels["app.kubernetes.io/name"], w.name) || w.labels["app.kubernetes.io/name"] != w.name {
			t.Errorf("%s: pods are not labelled app.kubernetes.io/name=%s", where, w.name)
		}
		if sa := m.accounts[pod.ServiceAccountName]; pod.ServiceAccountName != w.name || sa == nil || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("%s: want a ServiceAccount of its own that mounts no token", where)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service account token", where)
		}
		psc := pod.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: want the pod non-root with the RuntimeDefault seccomp profile", where)
		}
		budget := false
		for _, b := range m.budgets {
			if b.Spec.Selector != nil && b.Spec.Selector.MatchLabels["app.kubernetes.io/name"] == w.name {
				budget = true
			}
		}
		if !budget {
			t.Errorf("%s: no PodDisruptionBudget", where)
		}
		for _, c := range pod.Containers {
			where := where + " container " + c.Name
			sc := c.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s: want no privilege escalation, a read-only root filesystem, non-root and every capability dropped", where)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("%s: no %s request", where, r)
				}
				if _, ok := c.Resources.Limits[r]; !ok {
					t.Errorf("%s: no %s limit", where, r)
				}
			}
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Errorf("%s: want readiness and liveness probes", where)
			}
			if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
				t.Errorf("%s: image %q has no fixed tag", where, c.Image)
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					ref := e.ValueFrom.SecretKeyRef
					if s := m.secrets[ref.Name]; s == nil || s.Data[ref.Key] == nil {
						t.Errorf("%s: %s reads key %q of Secret %q, which the manifests lack", where, e.Name, ref.Key, ref.Name)
					}
				}
			}
			if strings.HasPrefix(c.Image, junctionImage+":") {
				checkJunctionContainer(t, m, w.name, pod, c, vars)
			}
		}
	}
}

// checkJunctionContainer checks a container of the one binary: what it
// runs, its variables, ports, probes and certificate against the code.
func checkJunctionContainer(t *testing.T, m *manifests, name string, pod corev1.PodSpec, c corev1.Container, vars map[string]bool) {
	t.Helper()
	where := name
	if !slices.Equal(c.Args, []string{"serve", name}) {
		t.Errorf("%s: args %v, want serve %s", where, c.Args, name)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if !vars[e.Name] {
			t.Errorf("%s: %s is not a variable junction serve reads (docs/configuration.md)", where, e.Name)
		}
		env[e.Name] = e.Value
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	listens := map[string]string{"http": "JUNCTION_HTTP_ADDR", "probe": "JUNCTION_PROBE_ADDR"}
	serves := map[string]bool{"http": true, "probe": true}
	for _, call := range services.Calls(name) {
		if isRPCPattern(call.Pattern) && !strings.HasPrefix(call.Pattern, "/grpc.") {
			serves["grpc"] = true
			listens["grpc"] = "JUNCTION_GRPC_ADDR"
		}
	}
	for port := range ports {
		if !serves[port] {
			t.Errorf("%s: container port %q, which it does not serve", where, port)
		}
	}
	for port, v := range listens {
		_, p, err := net.SplitHostPort(env[v])
		if err != nil || p != strconv.Itoa(int(ports[port])) {
			t.Errorf("%s: %s=%q does not listen on its container port %s (%d)", where, v, env[v], port, ports[port])
		}
	}
	for _, probe := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
		if probe == nil {
			continue
		}
		g := probe.HTTPGet
		if g == nil || g.Port.StrVal != "probe" || (g.Path != "/readyz" && g.Path != "/healthz") {
			t.Errorf("%s: a probe that is not GET /readyz or /healthz on the probe port", where)
		}
	}
	if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("%s: readiness is not /readyz", where)
	}
	if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("%s: liveness is not /healthz", where)
	}
	if d := env["JUNCTION_DISCOVERY"]; d != "dns:///junction.svc.cluster.local" {
		t.Errorf("%s: JUNCTION_DISCOVERY=%q, want DNS in the namespace junction", where, d)
	}
	// Its own certificate, mounted where the variables say.
	var tlsSecret string
	for _, v := range pod.Volumes {
		if v.Secret != nil && strings.HasSuffix(v.Secret.SecretName, "-tls") {
			tlsSecret = v.Secret.SecretName
		}
	}
	mounted := false
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == filepath.Dir(env["JUNCTION_TLS_CERT"]) && vm.ReadOnly {
			mounted = true
		}
	}
	if !mounted || env["JUNCTION_TLS_CERT"] == "" || env["JUNCTION_TLS_KEY"] == "" || env["JUNCTION_TLS_CA"] == "" {
		t.Errorf("%s: its certificate is not mounted where JUNCTION_TLS_* say", where)
	}
	found := false
	for _, cert := range m.certificates {
		if cert.Spec.SecretName == tlsSecret {
			found = true
			if !slices.Equal(cert.Spec.URIs, []string{"spiffe://junction.local/" + name}) || cert.Spec.PrivateKey.Encoding != "PKCS8" || !slices.Contains(cert.Spec.Usages, "client auth") || !slices.Contains(cert.Spec.Usages, "server auth") {
				t.Errorf("%s: certificate %s does not name spiffe://junction.local/%s with a PKCS#8 key for both ends of mTLS", where, cert.Metadata.Name, name)
			}
		}
	}
	if !found {
		t.Errorf("%s: no cert-manager Certificate makes its Secret %q", where, tlsSecret)
	}
	// A headless Service with the named ports DNS discovery looks up.
	svc := m.services[name]
	if svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("%s: no headless Service of its name (DNS discovery)", where)
		return
	}
	var named []string
	for _, p := range svc.Spec.Ports {
		named = append(named, p.Name)
		if p.TargetPort.StrVal != p.Name {
			t.Errorf("%s: Service port %s does not target the container port of its name", where, p.Name)
		}
	}
	wantNamed := []string{"http"}
	if serves["grpc"] {
		wantNamed = append(wantNamed, "grpc")
	}
	if !slices.Equal(named, wantNamed) {
		t.Errorf("%s: Service ports %v, want %v (the SRV records discovery reads)", where, named, wantNamed)
	}
}

func checkNetworkPolicies(t *testing.T, m *manifests) {
	t.Helper()
	deny := false
	in, out := map[edge]bool{}, map[edge]bool{}
	open := map[string][]string{} // workload -> ports reachable from anywhere
	dns := map[string]bool{}
	for _, p := range m.policies {
		target := p.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"]
		types := slices.Clone(p.Spec.PolicyTypes)
		if len(p.Spec.PodSelector.MatchLabels) == 0 {
			if !slices.Equal(types, []networkingv1.PolicyType{"Ingress", "Egress"}) || len(p.Spec.Ingress)+len(p.Spec.Egress) != 0 {
				t.Errorf("policy %s selects every pod and allows something", p.Name)
			}
			deny = true
			continue
		}
		for _, r := range p.Spec.Ingress {
			for _, port := range r.Ports {
				if len(r.From) == 0 {
					open[target] = append(open[target], port.Port.String())
				}
				for _, f := range r.From {
					if f.PodSelector == nil || f.NamespaceSelector != nil || f.IPBlock != nil {
						t.Errorf("policy %s: an ingress from outside the shop's pods", p.Name)
						continue
					}
					in[edge{f.PodSelector.MatchLabels["app.kubernetes.io/name"], target, port.Port.String()}] = true
				}
			}
		}
		for _, r := range p.Spec.Egress {
			for _, port := range r.Ports {
				if len(r.To) == 0 {
					t.Errorf("policy %s: egress to anywhere on %s", p.Name, port.Port.String())
				}
				for _, to := range r.To {
					if to.NamespaceSelector != nil && to.PodSelector != nil && to.PodSelector.MatchLabels["k8s-app"] == "kube-dns" && port.Port.IntValue() == 53 {
						dns[target] = true
						continue
					}
					if to.PodSelector == nil || to.NamespaceSelector != nil || to.IPBlock != nil {
						t.Errorf("policy %s: an egress outside the shop's pods", p.Name)
						continue
					}
					out[edge{target, to.PodSelector.MatchLabels["app.kubernetes.io/name"], port.Port.String()}] = true
				}
			}
		}
	}
	if !deny {
		t.Error("no default-deny NetworkPolicy")
	}
	want := wantEdges(m)
	for e := range want {
		if !in[e] {
			t.Errorf("edge %s: its ingress is not allowed", e)
		}
		if !out[e] {
			t.Errorf("edge %s: its egress is not allowed", e)
		}
	}
	for _, allowed := range []map[edge]bool{in, out} {
		for e := range allowed {
			if !want[e] {
				t.Errorf("edge %s is allowed but is not in the communication map", e)
			}
		}
	}
	for w, ports := range open {
		sort.Strings(ports)
		ok := (w == services.Gateway && slices.Equal(ports, []string{"http", "probe"})) || slices.Equal(ports, []string{"probe"}) || (w == services.Broker && slices.Equal(ports, []string{"monitor"}))
		if !ok {
			t.Errorf("%s is reachable from anywhere on %v; only the gateway's http and probe ports may be", w, ports)
		}
	}
	for name := range m.deployments {
		if !dns[name] {
			t.Errorf("%s may not reach DNS, which its discovery needs", name)
		}
	}
}

// generated is what kustomize made of generator base: base with a hash
// suffix.
func generated[T any](all map[string]T, base string) (T, bool) {
	for name, v := range all {
		if rest, ok := strings.CutPrefix(name, base+"-"); ok && !strings.Contains(rest, "-") {
			return v, true
		}
	}
	var zero T
	return zero, false
}

func checkBrokerAndDatabases(t *testing.T, m *manifests) {
	t.Helper()
	broker, _ := generated(m.secrets, "junction-broker")
	if broker == nil {
		t.Fatal("no Secret junction-broker")
	}
	if err := checkBrokerURL("junction-broker url", string(broker.Data["url"])); err != nil {
		t.Error(err)
	}
	if b := m.statefulSets[services.Broker]; b == nil {
		t.Error("no broker StatefulSet")
	} else if strings.HasPrefix(string(broker.Data["url"]), "nats://") {
		if _, replicas, _ := natsReplicas(string(broker.Data["url"])); replicas != int(*b.Spec.Replicas) {
			t.Errorf("streams in %d copies on %d NATS nodes", replicas, *b.Spec.Replicas)
		}
		if string(broker.Data["tls"]) != "true" {
			t.Error("the services connect to NATS without their certificates")
		}
		checkNATSUsers(t, m)
	}
	db, _ := generated(m.secrets, "junction-db")
	if db == nil {
		t.Fatal("no Secret junction-db")
	}
	for _, s := range serviceTable {
		if !s.stores {
			continue
		}
		raw := string(db.Data[s.name])
		u, err := url.Parse(raw)
		schema, role := schemaOf(s.name)
		if err != nil || u.Scheme != "postgres" || u.User.Username() != role || u.Query().Get("search_path") != schema {
			t.Errorf("junction-db %s = %q, want postgres://%s:…@…?search_path=%s (a role and a schema of its own, as junction up makes)", s.name, redactURL(raw), role, schema)
		}
		if err := checkDatabaseURL(s.name, strings.Replace(raw, "search_path", "x", 1)); err != nil {
			t.Error(err)
		}
	}
}

// natsUsersBlock renders the embedded broker's users (brokerUsers) as
// nats-server configuration: the same identities and permissions in the
// cluster.
func natsUsersBlock(t *testing.T) string {
	t.Helper()
	users, err := brokerUsers()
	if err != nil {
		t.Fatal(err)
	}
	quote := func(ss []string) string {
		q := make([]string, len(ss))
		for i, s := range ss {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	var b bytes.Buffer
	b.WriteString("authorization {\n  users: [\n")
	for _, u := range users {
		if u.Permissions == nil {
			fmt.Fprintf(&b, "    { user: %q }\n", u.Username)
			continue
		}
		fmt.Fprintf(&b, "    {\n      user: %q\n      permissions: {\n", u.Username)
		fmt.Fprintf(&b, "        publish: { allow: %s }\n", quote(u.Permissions.Publish.Allow))
		fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", quote(u.Permissions.Subscribe.Allow))
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

// checkNATSUsers: nats.conf holds exactly the embedded broker's users
// (-update writes them).
func checkNATSUsers(t *testing.T, m *manifests) {
	t.Helper()
	path := filepath.Join("..", "..", "deploy", "k8s", "components", "nats", "nats.conf")
	const begin, end = "# BEGIN users", "# END users"
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(file)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s: no %q … %q section", path, begin, end)
	}
	lineEnd := i + strings.Index(s[i:], "\n") + 1
	want := natsUsersBlock(t)
	if *update {
		s = s[:lineEnd] + want + s[j:]
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		j = strings.Index(s, end)
	}
	if diff := cmp.Diff(want, s[lineEnd:j]); diff != "" {
		t.Errorf("%s: the users differ from the embedded broker's; run go test ./cmd/junction -run TestKubernetesManifests -update (-want +got):\n%s", path, diff)
	}
	conf, _ := generated(m.configMaps, "broker-config")
	if conf == nil || conf.Data["nats.conf"] != string(file) && !*update {
		t.Error("the broker's ConfigMap does not carry nats.conf")
	}
}

// composeFile is the part of the Compose specification deploy/compose
// uses; a key outside it fails the decoding.
type composeFile struct {
	Name     string                    `json:"name"`
	Junction composeService            `json:"x-junction"`
	Services map[string]composeService `json:"services"`
	Volumes  map[string]any            `json:"volumes"`
}

type composeService struct {
	Image string `json:"image"`
	Build *struct {
		Context    string `json:"context"`
		Dockerfile string `json:"dockerfile"`
	} `json:"build"`
	Restart     string            `json:"restart"`
	ReadOnly    bool              `json:"read_only"`
	User        string            `json:"user"`
	CapDrop     []string          `json:"cap_drop"`
	SecurityOpt []string          `json:"security_opt"`
	Tmpfs       []string          `json:"tmpfs"`
	Command     []string          `json:"command"`
	Environment map[string]string `json:"environment"`
	Volumes     []string          `json:"volumes"`
	Ports       []string          `json:"ports"`
	DependsOn   map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Healthcheck *struct {
		Test     []string `json:"test"`
		Interval string   `json:"interval"`
		Timeout  string   `json:"timeout"`
		Retries  int      `json:"retries"`
	} `json:"healthcheck"`
}

// TestComposeFile checks deploy/compose/compose.yaml against the code (no
// container engine runs here): every service of the shop as the one image
// with serve <service>, only variables serve reads (and OpenTelemetry's),
// hardened containers, each service's database URL the one PostgreSQL
// makes its role from, dependencies and mounted files that exist, and a
// Prometheus configuration promtool accepts.
func TestComposeFile(t *testing.T) {
	dir := filepath.Join("..", "..", "deploy", "compose")
	raw, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	vars := serveVariables(t)
	for _, s := range serviceTable {
		if s.name == services.Broker {
			if _, ok := c.Services["nats"]; !ok {
				t.Error("no nats service: the broker")
			}
			continue
		}
		svc, ok := c.Services[s.name]
		if !ok {
			t.Errorf("%s is not in compose.yaml", s.name)
			continue
		}
		if !strings.HasPrefix(svc.Image, junctionImage+":") || svc.Build == nil || filepath.Join(dir, svc.Build.Context, svc.Build.Dockerfile) != filepath.Join("..", "..", "Dockerfile") {
			t.Errorf("%s: image %q built from %+v, want the shop's image from the Dockerfile", s.name, svc.Image, svc.Build)
		}
		if !slices.Equal(svc.Command, []string{"serve", s.name}) {
			t.Errorf("%s: command %v, want serve %s", s.name, svc.Command, s.name)
		}
		if !svc.ReadOnly || !slices.Equal(svc.CapDrop, []string{"ALL"}) || !slices.Contains(svc.SecurityOpt, "no-new-privileges:true") || svc.User == "" || strings.HasPrefix(svc.User, "0") {
			t.Errorf("%s: want a read-only, non-root container with every capability dropped and no new privileges", s.name)
		}
		for k := range svc.Environment {
			if !vars[k] && !strings.HasPrefix(k, "OTEL_") {
				t.Errorf("%s: %s is not a variable junction serve reads", s.name, k)
			}
		}
		if s.stores {
			u := svc.Environment["JUNCTION_DATABASE_URL"]
			file, err := os.ReadFile(filepath.Join(dir, "db", s.name))
			if err != nil || strings.TrimSpace(string(file)) != u {
				t.Errorf("%s: its JUNCTION_DATABASE_URL is not the one in db/%s, which PostgreSQL makes its role from (%v)", s.name, s.name, err)
			}
			schema, role := schemaOf(s.name)
			if p, err := url.Parse(u); err != nil || p.User.Username() != role || p.Query().Get("search_path") != schema {
				t.Errorf("%s: database URL %q, want role %s and schema %s", s.name, redactURL(u), role, schema)
			}
			if svc.Environment["JUNCTION_BROKER"] == "" {
				t.Errorf("%s: no broker", s.name)
			}
		}
	}
	for name, svc := range c.Services {
		for dep := range svc.DependsOn {
			if _, ok := c.Services[dep]; !ok || dep == name {
				t.Errorf("%s depends on %q, which is not another service of the file", name, dep)
			}
		}
		for _, v := range svc.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, ".") {
				if _, named := c.Volumes[src]; !named {
					t.Errorf("%s mounts volume %q, which the file does not declare", name, src)
				}
				continue
			}
			if _, err := os.Stat(filepath.Join(dir, src)); err != nil {
				t.Errorf("%s mounts %s: %v", name, src, err)
			}
		}
		if strings.HasSuffix(svc.Image, ":latest") || !strings.Contains(svc.Image, ":") {
			t.Errorf("%s: image %q has no fixed tag", name, svc.Image)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("JUNCTION_REQUIRE_ALL") == "1" {
			t.Fatal("promtool is required (JUNCTION_REQUIRE_ALL=1) to check the compose Prometheus")
		}
		t.Skip("no promtool: the compose Prometheus configuration is not checked")
	}
	// Checked as compose mounts it: the rules beside the configuration.
	tmp := t.TempDir()
	for src, dst := range map[string]string{filepath.Join(dir, "prometheus.yml"): "prometheus.yml", filepath.Join(dir, "..", "prometheus", "rules", "junction.yml"): filepath.Join("rules", "junction.yml")} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(tmp, dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(promtool, "check", "config", filepath.Join(tmp, "prometheus.yml")).CombinedOutput(); err != nil {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
}

// TestDockerfile checks the image's recipe (no container engine runs
// here): a static build of cmd/junction with the Go of go.mod, on a
// distroless or empty base, run as a non-root user; and builds the
// binary that way to show it is static (no dynamic loader).
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var goVersion string
	for line := range strings.SplitSeq(string(mod), "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			goVersion = strings.Join(strings.Split(v, ".")[:2], ".")
		}
	}
	var froms, users, entry []string
	built := false
	for line := range strings.SplitSeq(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
			users = nil
		case "USER":
			users = append(users, f[1])
		case "RUN":
			if strings.Contains(line, "CGO_ENABLED=0") && strings.Contains(line, "go build") && strings.HasSuffix(strings.TrimSpace(line), "./cmd/junction") {
				built = true
			}
		case "ENTRYPOINT":
			entry = f[1:]
		}
	}
	if len(froms) < 2 || froms[0] != "golang:"+goVersion {
		t.Errorf("build stage %v, want golang:%s (go.mod's)", froms, goVersion)
	}
	if last := froms[len(froms)-1]; last != "scratch" && !strings.HasPrefix(last, "gcr.io/distroless/static") {
		t.Errorf("final stage FROM %s, want scratch or distroless/static", last)
	}
	if len(users) != 1 || strings.HasPrefix(users[0], "0") || strings.HasPrefix(users[0], "root") {
		t.Errorf("final stage USER %v, want one non-root user", users)
	}
	if !built {
		t.Error("no RUN CGO_ENABLED=0 go build … ./cmd/junction")
	}
	if !slices.Equal(entry, []string{`["/junction"]`}) {
		t.Errorf("ENTRYPOINT %v, want [\"/junction\"]", entry)
	}
	if testing.Short() {
		t.Skip("-short: the static build is not made")
	}
	bin := filepath.Join(t.TempDir(), "junction")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary needs a dynamic loader; it would not run FROM scratch or distroless/static")
		}
	}
}
