// Package spec parses and validates Kubernetes-style manifests: the
// Namespace, Deployment and Service objects fleet runs as Docker containers.
//
// Parsing walks the YAML node tree instead of decoding into structs so that
// every problem in every file is reported in one pass, each with its file,
// line and field path. A Kubernetes field fleet does not support is an
// error, never silently dropped; the few Kubernetes fields that are legal but
// meaningless to fleet (server-set metadata, status, dnsPolicy, ...) produce
// warnings.
//
// Objects returned by Parse and Load have every default applied, so the
// rest of fleet never has to know what the manifest left out. Defaults follow
// Kubernetes, plus what makes the abbreviated manifests of tutorials work:
// each is documented on its field.
package spec

// Kinds fleet supports, with the one apiVersion each must declare.
const (
	KindNamespace  = "Namespace"
	KindDeployment = "Deployment"
	KindService    = "Service"
)

// DefaultNamespace is used when neither the manifest nor the caller names a
// namespace.
const DefaultNamespace = "default"

// Source is where an object starts in its manifest.
type Source struct {
	// File is the name as given to Parse, or the path Load found it at;
	// "<stdin>" for standard input.
	File string `json:"file,omitempty"`
	// Line is 1-based: the line of the object's first key.
	Line int `json:"line,omitempty"`
}

// Meta is the part every object shares: type, identity and metadata.
type Meta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Name is a DNS-1123 subdomain (a DNS-1035 label for Services, whose
	// names become DNS names).
	Name string `json:"name"`
	// Namespace defaults to the defaultNamespace given to Parse or Load,
	// or "default". Empty for Namespace objects, which are not namespaced.
	Namespace string `json:"namespace,omitempty"`
	// Labels are never nil.
	Labels map[string]string `json:"labels"`
	// Annotations are never nil.
	Annotations map[string]string `json:"annotations"`
	// Source is where the object was read from; not part of its identity.
	Source Source `json:"source,omitzero"`
}

// Metadata returns m, so that every object embedding Meta is an Object.
func (m *Meta) Metadata() *Meta { return m }

// Object is a parsed manifest object: *Namespace, *Deployment or *Service.
type Object interface {
	Metadata() *Meta
}

// Key identifies an object among all objects: "Kind/namespace/name", or
// "Namespace/name" for namespaces.
func Key(o Object) string {
	m := o.Metadata()
	if m.Kind == KindNamespace {
		return m.Kind + "/" + m.Name
	}
	return m.Kind + "/" + m.Namespace + "/" + m.Name
}

// Namespace groups objects; fleet records it and prefixes container names
// with it.
type Namespace struct {
	Meta
}

// Deployment runs Replicas copies of a pod template and rolls them over
// when the template changes.
type Deployment struct {
	Meta
	// Replicas defaults to 1; 0 is allowed.
	Replicas int `json:"replicas"`
	// Selector is spec.selector.matchLabels. When the manifest has no
	// selector it defaults to the template's labels; when the template has
	// no labels either, both become {app: <name>}. It always matches the
	// template's labels.
	Selector map[string]string `json:"selector"`
	Template PodTemplate       `json:"template"`
	// Strategy is how replicas are replaced when the template changes.
	Strategy Strategy `json:"strategy"`
	// MinReadySeconds defaults to 0.
	MinReadySeconds int `json:"minReadySeconds"`
	// ProgressDeadlineSeconds defaults to 600.
	ProgressDeadlineSeconds int `json:"progressDeadlineSeconds"`
	// RevisionHistoryLimit defaults to 10.
	RevisionHistoryLimit int `json:"revisionHistoryLimit"`
	// Paused defaults to false.
	Paused bool `json:"paused"`
}

// Strategy values. Canary and BlueGreen are fleet's own (Kubernetes
// leaves them to add-ons such as Argo Rollouts, whose field names fleet
// borrows).
const (
	RollingUpdate = "RollingUpdate"
	Recreate      = "Recreate"
	Canary        = "Canary"
	BlueGreen     = "BlueGreen"
)

// Strategy is a Deployment's update strategy.
type Strategy struct {
	// Type is RollingUpdate (default), Recreate, Canary or BlueGreen.
	Type string `json:"type"`
	// MaxSurge and MaxUnavailable default to 25% each for RollingUpdate
	// and are zero for the other types. They are never both zero for
	// RollingUpdate.
	MaxSurge       IntOrPercent `json:"maxSurge"`
	MaxUnavailable IntOrPercent `json:"maxUnavailable"`
	// Canary is set exactly when Type is Canary.
	Canary *CanaryStrategy `json:"canary,omitempty"`
	// BlueGreen is set exactly when Type is BlueGreen.
	BlueGreen *BlueGreenStrategy `json:"blueGreen,omitempty"`
}

// CanaryStrategy brings up the new template beside the old one and moves
// traffic to it in steps, by weight at fleet's load balancer.
type CanaryStrategy struct {
	// Steps run in order; after the last, the canary takes all traffic
	// and the old pods go.
	Steps []CanaryStep `json:"steps"`
	// Analysis, when set, aborts the canary (and rolls it back) when its
	// pods' answers at the load balancer are worse than it allows.
	Analysis *CanaryAnalysis `json:"analysis,omitempty"`
}

// CanaryStep is one step: exactly one of SetWeight and Pause is set.
type CanaryStep struct {
	// SetWeight is the percentage of requests (1–100) the canary gets;
	// it runs ceil(weight × replicas / 100) pods beside the full old set.
	SetWeight *int `json:"setWeight,omitempty"`
	// Pause holds the step: for Seconds, or until `fleet rollout
	// promote` when Seconds is 0.
	Pause *CanaryPause `json:"pause,omitempty"`
}

// CanaryPause is a pause step.
type CanaryPause struct {
	// Seconds is how long to wait; 0 waits for `fleet rollout promote`.
	Seconds int `json:"seconds,omitempty"`
}

// CanaryAnalysis is the canary's limits, measured at fleet's load
// balancer over the current step, once MinRequests have been answered.
type CanaryAnalysis struct {
	// MaxErrorPercent is the highest share of failed answers (5xx or no
	// answer) allowed, in percent; 0 means no limit.
	MaxErrorPercent float64 `json:"maxErrorPercent,omitempty"`
	// MaxP99Millis is the highest 99th-percentile latency allowed; 0
	// means no limit.
	MaxP99Millis int `json:"maxP99Millis,omitempty"`
	// MinRequests is how many answers a verdict needs. Default 20.
	MinRequests int `json:"minRequests"`
}

// BlueGreenStrategy brings up the complete new set beside the old one,
// switches all traffic to it at once when it is ready, and keeps the old
// set for a while for an instant `fleet rollout undo`.
type BlueGreenStrategy struct {
	// AutoPromotion switches as soon as every new pod is ready (default
	// true); false waits for `fleet rollout promote`.
	AutoPromotion bool `json:"autoPromotionEnabled"`
	// ScaleDownDelaySeconds is how long the old set stays after the
	// switch. Default 30.
	ScaleDownDelaySeconds int `json:"scaleDownDelaySeconds"`
}

// IntOrPercent is an absolute count or a percentage of replicas.
type IntOrPercent struct {
	Value   int  `json:"value"`
	Percent bool `json:"percent,omitempty"`
}

// PodTemplate is what each replica runs. Everything in it feeds
// PodSpecHash.
type PodTemplate struct {
	// Labels default to the Deployment's selector, or {app: <name>}.
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Spec        PodSpec           `json:"spec,omitzero"`
}

// PodSpec is the containers of one replica and how they run.
type PodSpec struct {
	// Containers holds at least one container, names unique.
	Containers []Container `json:"containers,omitempty"`
	// InitContainers run one after another, each to completion, before
	// the containers start.
	InitContainers []Container `json:"initContainers,omitempty"`
	// RestartPolicy is always Always, the only value Deployments allow.
	RestartPolicy string `json:"restartPolicy,omitempty"`
	// NodeSelector restricts placement to machines with these labels.
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// TerminationGracePeriodSeconds defaults to 30.
	TerminationGracePeriodSeconds int `json:"terminationGracePeriodSeconds,omitempty"`
	// Volumes are mounted by the containers' VolumeMounts.
	Volumes []Volume `json:"volumes,omitempty"`
}

// Image pull policies.
const (
	PullAlways       = "Always"
	PullIfNotPresent = "IfNotPresent"
	PullNever        = "Never"
)

// Container is one container of a pod.
type Container struct {
	// Name is a DNS label, unique within the pod.
	Name  string `json:"name,omitempty"`
	Image string `json:"image,omitempty"`
	// Command replaces the image's entrypoint; Args its cmd.
	Command []string `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	Env     []EnvVar `json:"env,omitempty"`
	// EnvFrom sets a variable for every key of a ConfigMap or Secret;
	// Env wins over it.
	EnvFrom []EnvFromSource `json:"envFrom,omitempty"`
	// Ports have unique containerPort/protocol pairs within the pod.
	Ports     []ContainerPort `json:"ports,omitempty"`
	Resources Resources       `json:"resources,omitzero"`
	// ImagePullPolicy defaults as in Kubernetes: Always when the image's
	// tag is "latest" or absent (and there is no digest), else
	// IfNotPresent.
	ImagePullPolicy string `json:"imagePullPolicy,omitempty"`
	// Probes are parsed and validated now, enforced by the reconciler.
	LivenessProbe  *Probe        `json:"livenessProbe,omitempty"`
	ReadinessProbe *Probe        `json:"readinessProbe,omitempty"`
	StartupProbe   *Probe        `json:"startupProbe,omitempty"`
	WorkingDir     string        `json:"workingDir,omitempty"`
	VolumeMounts   []VolumeMount `json:"volumeMounts,omitempty"`
}

// EnvVar is one environment variable: a literal value, or one from a
// ConfigMap or Secret key.
type EnvVar struct {
	Name      string        `json:"name,omitempty"`
	Value     string        `json:"value,omitempty"`
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

// Protocols for ports.
const (
	ProtocolTCP = "TCP"
	ProtocolUDP = "UDP"
)

// ContainerPort is a port a container listens on.
type ContainerPort struct {
	// Name is optional; an IANA service name that probes and Service
	// targetPorts can refer to.
	Name          string `json:"name,omitempty"`
	ContainerPort int    `json:"containerPort,omitempty"`
	// HostPort is 0 when the port is not published on the machine.
	HostPort int `json:"hostPort,omitempty"`
	// Protocol defaults to TCP.
	Protocol string `json:"protocol,omitempty"`
}

// Resources are a container's requests and limits. When only a limit is
// given for a resource, the request defaults to it, as in Kubernetes.
type Resources struct {
	Requests ResourceList `json:"requests,omitzero"`
	Limits   ResourceList `json:"limits,omitzero"`
}

// ResourceList is an amount of CPU and memory; zero means unset.
type ResourceList struct {
	// MilliCPU is thousandths of a CPU, rounded up.
	MilliCPU int64 `json:"milliCPU,omitempty"`
	// Memory is bytes, rounded up.
	Memory int64 `json:"memory,omitempty"`
}

// Probe is a health check. Exactly one of HTTPGet, TCPSocket and Exec is
// set.
type Probe struct {
	HTTPGet   *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"`
	Exec      *ExecAction      `json:"exec,omitempty"`
	// InitialDelaySeconds defaults to 0.
	InitialDelaySeconds int `json:"initialDelaySeconds,omitempty"`
	// PeriodSeconds defaults to 10.
	PeriodSeconds int `json:"periodSeconds,omitempty"`
	// TimeoutSeconds defaults to 1.
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
	// SuccessThreshold defaults to 1, and must be 1 for liveness and
	// startup probes.
	SuccessThreshold int `json:"successThreshold,omitempty"`
	// FailureThreshold defaults to 3.
	FailureThreshold int `json:"failureThreshold,omitempty"`
}

// HTTPGetAction probes with an HTTP GET; 200-399 is healthy.
type HTTPGetAction struct {
	// Path defaults to "/".
	Path string `json:"path,omitempty"`
	// Port is a number or the name of one of the container's ports.
	Port IntOrString `json:"port,omitzero"`
	// Scheme is HTTP (default) or HTTPS.
	Scheme      string       `json:"scheme,omitempty"`
	HTTPHeaders []HTTPHeader `json:"httpHeaders,omitempty"`
}

// HTTPHeader is a header sent with an HTTP probe.
type HTTPHeader struct {
	Name  string `json:"name,omitempty"`
	Value string `json:"value,omitempty"`
}

// TCPSocketAction probes by opening a TCP connection.
type TCPSocketAction struct {
	// Port is a number or the name of one of the container's ports.
	Port IntOrString `json:"port,omitzero"`
}

// ExecAction probes by running a command in the container; exit 0 is
// healthy.
type ExecAction struct {
	Command []string `json:"command,omitempty"`
}

// IntOrString is a port number or a port name.
type IntOrString struct {
	Int   int    `json:"int,omitempty"`
	Str   string `json:"str,omitempty"`
	IsStr bool   `json:"isStr,omitempty"`
}

// String returns the number or the name.
func (v IntOrString) String() string {
	if v.IsStr {
		return v.Str
	}
	return itoa(v.Int)
}

// Service types.
const (
	ServiceClusterIP    = "ClusterIP"
	ServiceNodePort     = "NodePort"
	ServiceLoadBalancer = "LoadBalancer"
	ServiceExternalName = "ExternalName"
)

// Service gives a set of pods one stable address.
type Service struct {
	Meta
	// Type is ClusterIP (default), NodePort, LoadBalancer or ExternalName.
	Type string `json:"type"`
	// Selector picks the pods by label; empty selects none.
	Selector map[string]string `json:"selector"`
	// Ports has at least one port unless Type is ExternalName.
	Ports []ServicePort `json:"ports"`
	// ExternalName is the DNS name an ExternalName service aliases.
	ExternalName string `json:"externalName,omitempty"`
	// ClusterIP is "" (allocate), "None" (headless) or an IP address.
	ClusterIP string `json:"clusterIP,omitempty"`
}

// ServicePort is one port a Service exposes.
type ServicePort struct {
	// Name is required when a Service has more than one port.
	Name string `json:"name,omitempty"`
	// Protocol defaults to TCP.
	Protocol string `json:"protocol"`
	Port     int    `json:"port"`
	// TargetPort defaults to Port; a name refers to a container port name.
	TargetPort IntOrString `json:"targetPort"`
	// NodePort is 0 (allocate, for NodePort and LoadBalancer services) or
	// in 30000-32767.
	NodePort int `json:"nodePort,omitempty"`
	// AppProtocol names the application protocol ("http" makes fleet's
	// load balancer proxy at L7).
	AppProtocol string `json:"appProtocol,omitempty"`
}

// MatchLabels reports whether have carries every label of want (an empty
// want matches everything).
func MatchLabels(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Selects reports whether the Service picks pods of namespace ns with
// these labels: same namespace, and a selector (an empty one selects
// none) they all carry.
func (s *Service) Selects(ns string, labels map[string]string) bool {
	return s.Namespace == ns && len(s.Selector) > 0 && MatchLabels(labels, s.Selector)
}
