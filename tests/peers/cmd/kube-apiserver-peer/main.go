// Command kube-apiserver-peer runs a small real Kubernetes control plane on
// loopback, for tests: an embedded etcd (go.etcd.io/etcd/server/v3/embed), the
// real kube-apiserver of k8s.io/kubernetes (cmd/kube-apiserver/app, started
// in-process with flags, as the kube-apiserver binary starts it), and
// kube-controller-manager's CSR controllers (pkg/controller/certificates: the
// csrapproving controller and the signers for kubernetes.io/kube-apiserver-client,
// kubernetes.io/kube-apiserver-client-kubelet and kubernetes.io/kubelet-serving),
// with bootstrap-token authentication and the RBAC bindings kubeadm makes for
// kubelet TLS bootstrap.
//
// It writes into --dir:
//
//	ca.crt, ca.key          the cluster CA: client CA of the apiserver and the signers' CA
//	serving.crt             the apiserver's serving certificate (127.0.0.1, localhost)
//	admin.kubeconfig        a static token, user admin in group system:masters
//	requester.kubeconfig    a static token, user requester in group requesters (bound to
//	                        system:node-bootstrapper: create, get, list and watch CSRs)
//	bootstrap.kubeconfig    a bootstrap token (group system:bootstrappers)
//	etcd/                   etcd's data
//	audit.log               the apiserver's audit log (Metadata level, certificates.k8s.io only)
//
// and prints one JSON line on stdout when the apiserver is ready and the
// controllers run:
//
//	{"event":"ready","server":"https://127.0.0.1:PORT","dir":"...","adminToken":"...","bootstrapToken":"...","elapsedMs":...}
//
// It then reads commands on stdin, one per line, and answers each with one JSON line:
//
//	compact      compacts etcd to its current revision: {"event":"compacted","revision":N}
//	openapi DIR  writes the OpenAPI documents of certificates.k8s.io into DIR (see dumpOpenAPI):
//	             {"event":"openapi","files":[...]}
//
// It exits when stdin closes (so a test process that dies takes it along), or on SIGTERM.
// Logs (klog, etcd) go to stderr.
//
// Extra kube-apiserver flags can be given after "--".
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	openapiv3 "github.com/google/gnostic-models/openapiv3"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/proto"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/pkg/controller/certificates/approver"
	"k8s.io/kubernetes/pkg/controller/certificates/signer"
)

func main() {
	dir := flag.String("dir", "", "directory for the CA, kubeconfigs, etcd data and logs (required)")
	signingDuration := flag.Duration("cluster-signing-duration", 8760*time.Hour,
		"the signers' longest certificate (kube-controller-manager's --cluster-signing-duration)")
	klog.InitFlags(nil)
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "--dir is required")
		os.Exit(1)
	}
	if err := run(*dir, *signingDuration, flag.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "kube-apiserver-peer: %v\n", err)
		os.Exit(1)
	}
}

func run(dir string, signingDuration time.Duration, extraFlags []string) error {
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := func(name string) string { return filepath.Join(dir, name) }

	// The cluster CA, the serving certificate and the service-account key.
	caKey, caCert, err := newCA()
	if err != nil {
		return err
	}
	if err := writePEM(path("ca.crt"), "CERTIFICATE", caCert.Raw, 0o644); err != nil {
		return err
	}
	if err := writeKey(path("ca.key"), caKey); err != nil {
		return err
	}
	servingKey, servingDER, err := newServing(caKey, caCert)
	if err != nil {
		return err
	}
	if err := writePEM(path("serving.crt"), "CERTIFICATE", servingDER, 0o644); err != nil {
		return err
	}
	if err := writeKey(path("serving.key"), servingKey); err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	if err := writeKey(path("sa.key"), saKey); err != nil {
		return err
	}

	// Static tokens: the tests' administrator, a plain CSR requester, and the controllers'
	// own identity (so that the requests of each can be told apart in the audit log).
	adminToken, requesterToken, controllerToken := randomHex(16), randomHex(16), randomHex(16)
	tokens := fmt.Sprintf("%s,admin,admin-uid,\"system:masters\"\n", adminToken) +
		fmt.Sprintf("%s,requester,requester-uid,\"requesters\"\n", requesterToken) +
		fmt.Sprintf("%s,kube-controller-manager,kcm-uid,\"system:masters\"\n", controllerToken)
	if err := os.WriteFile(path("tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	policy := `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  resources:
  - group: certificates.k8s.io
- level: None
`
	if err := os.WriteFile(path("audit-policy.yaml"), []byte(policy), 0o600); err != nil {
		return err
	}

	// etcd, embedded.
	etcdClientURL, err := freeURL()
	if err != nil {
		return err
	}
	etcdPeerURL, err := freeURL()
	if err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Dir = path("etcd")
	cfg.Name = "peer"
	cfg.ListenClientUrls = []url.URL{*etcdClientURL}
	cfg.AdvertiseClientUrls = []url.URL{*etcdClientURL}
	cfg.ListenPeerUrls = []url.URL{*etcdPeerURL}
	cfg.AdvertisePeerUrls = []url.URL{*etcdPeerURL}
	cfg.InitialCluster = fmt.Sprintf("peer=%s", etcdPeerURL.String())
	cfg.LogLevel = zapcore.ErrorLevel.String()
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer etcd.Close()
	select {
	case <-etcd.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		return fmt.Errorf("etcd not ready after 60s")
	}
	etcdClient, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdClientURL.String()}, DialTimeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer etcdClient.Close()

	// kube-apiserver, in-process, with the flags a kubeadm control plane would give it.
	port, err := freePort()
	if err != nil {
		return err
	}
	flags := []string{
		"--etcd-servers=" + etcdClientURL.String(),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--tls-cert-file=" + path("serving.crt"),
		"--tls-private-key-file=" + path("serving.key"),
		"--client-ca-file=" + path("ca.crt"),
		"--token-auth-file=" + path("tokens.csv"),
		"--enable-bootstrap-token-auth=true",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + path("sa.key"),
		"--service-account-signing-key-file=" + path("sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + path("certs"),
		"--audit-policy-file=" + path("audit-policy.yaml"),
		"--audit-log-path=" + path("audit.log"),
		"--profiling=false",
	}
	flags = append(flags, extraFlags...)
	cmd := app.NewAPIServerCommand()
	cmd.SetArgs(flags)
	apiserverDone := make(chan error, 1)
	go func() { apiserverDone <- cmd.Execute() }()

	server := fmt.Sprintf("https://127.0.0.1:%d", port)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw})
	adminConfig := &rest.Config{
		Host:            server,
		BearerToken:     adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM},
		QPS:             100,
		Burst:           200,
	}
	admin, err := clientset.NewForConfig(adminConfig)
	if err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 120*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-apiserverDone:
			return false, fmt.Errorf("kube-apiserver exited: %v", err)
		default:
		}
		body, err := admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	})
	if err != nil {
		return fmt.Errorf("waiting for kube-apiserver /readyz: %w", err)
	}

	// Kubelet TLS bootstrap as kubeadm sets it up: a bootstrap token (without kubeadm's extra
	// group, like the embedded server's tokens: its user is in system:bootstrappers only), and
	// the bindings that let bootstrappers create CSRs and have node client CSRs auto-approved.
	tokenID, tokenSecret := randomHex(3), randomHex(8)
	bootstrapSecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + tokenID, Namespace: "kube-system"},
		Type:       corev1.SecretType("bootstrap.kubernetes.io/token"),
		StringData: map[string]string{
			"token-id":                       tokenID,
			"token-secret":                   tokenSecret,
			"usage-bootstrap-authentication": "true",
		},
	}
	if err := createOrExists(func() error {
		_, err := admin.CoreV1().Secrets("kube-system").Create(ctx, bootstrapSecret, metav1.CreateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("creating the bootstrap token: %w", err)
	}
	bindings := []struct{ name, role, group string }{
		{"kubeadm:kubelet-bootstrap", "system:node-bootstrapper", "system:bootstrappers"},
		{"requesters", "system:node-bootstrapper", "requesters"},
		{"kubeadm:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", "system:bootstrappers"},
		{"kubeadm:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes"},
	}
	for _, b := range bindings {
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: b.name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: b.role},
			Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: b.group}},
		}
		if err := createOrExists(func() error {
			_, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})
			return err
		}); err != nil {
			return fmt.Errorf("creating ClusterRoleBinding %s: %w", b.name, err)
		}
	}

	// kube-controller-manager's CSR controllers, with their own identity.
	controllerConfig := rest.CopyConfig(adminConfig)
	controllerConfig.BearerToken = controllerToken
	controllers, err := clientset.NewForConfig(controllerConfig)
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(controllers, 0)
	csrInformer := factory.Certificates().V1().CertificateSigningRequests()
	approving := approver.NewCSRApprovingController(ctx, controllers, csrInformer)
	signers := []*signer.CSRSigningController{}
	for _, name := range []string{
		certificatesv1.KubeAPIServerClientSignerName,
		certificatesv1.KubeAPIServerClientKubeletSignerName,
		certificatesv1.KubeletServingSignerName,
	} {
		s, err := signer.NewCSRSigningController(ctx, "csrsigning-"+strings.TrimPrefix(name, "kubernetes.io/"),
			name, controllers, csrInformer, path("ca.crt"), path("ca.key"), signingDuration)
		if err != nil {
			return fmt.Errorf("signer %s: %w", name, err)
		}
		signers = append(signers, s)
	}
	factory.Start(ctx.Done())
	go approving.Run(ctx, 2)
	for _, s := range signers {
		go s.Run(ctx, 2)
	}

	// Kubeconfigs for an administrator and for a bootstrap token.
	if err := writeKubeconfig(path("admin.kubeconfig"), server, caPEM, "admin", adminToken); err != nil {
		return err
	}
	if err := writeKubeconfig(path("requester.kubeconfig"), server, caPEM, "requester", requesterToken); err != nil {
		return err
	}
	bootstrapToken := tokenID + "." + tokenSecret
	if err := writeKubeconfig(path("bootstrap.kubeconfig"), server, caPEM, "tls-bootstrap-token-user", bootstrapToken); err != nil {
		return err
	}

	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(map[string]any{
		"event":          "ready",
		"server":         server,
		"dir":            dir,
		"adminToken":     adminToken,
		"requesterToken": requesterToken,
		"bootstrapToken": bootstrapToken,
		"elapsedMs":      float64(time.Since(start).Microseconds()) / 1000,
	}); err != nil {
		return err
	}

	lines := make(chan string)
	go func() {
		scanner := bufio.NewScanner(os.Stdin)
		for scanner.Scan() {
			lines <- strings.TrimSpace(scanner.Text())
		}
		close(lines)
	}()
	for {
		select {
		case err := <-apiserverDone:
			return fmt.Errorf("kube-apiserver exited: %v", err)
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			if dir, ok := strings.CutPrefix(line, "openapi "); ok {
				files, err := dumpOpenAPI(ctx, admin, dir)
				if err != nil {
					_ = out.Encode(map[string]any{"event": "error", "error": err.Error()})
					continue
				}
				_ = out.Encode(map[string]any{"event": "openapi", "files": files})
				continue
			}
			switch line {
			case "compact":
				rev, err := compact(ctx, etcdClient)
				if err != nil {
					_ = out.Encode(map[string]any{"event": "error", "error": err.Error()})
					continue
				}
				_ = out.Encode(map[string]any{"event": "compacted", "revision": rev})
			case "":
			default:
				_ = out.Encode(map[string]any{"event": "error", "error": "unknown command " + line})
			}
		}
	}
}

// openAPIGroupVersions are the group-versions whose OpenAPI documents dumpOpenAPI keeps: those
// the embedded CSR API server serves.
var openAPIGroupVersions = []string{"apis/certificates.k8s.io/v1"}

// servedPath says whether the embedded CSR API server serves an OpenAPI path: the group's and
// the version's discovery, and CertificateSigningRequests (not the group's other resources,
// ClusterTrustBundles and PodCertificateRequests).
func servedPath(path string) bool {
	return path == "/apis/certificates.k8s.io/" || path == "/apis/certificates.k8s.io/v1/" ||
		strings.Contains(path, "/certificatesigningrequests")
}

// dumpOpenAPI writes the apiserver's OpenAPI documents, cut down to what the embedded CSR API
// server serves, into dir:
//
//	openapi-v2.json   /openapi/v2 with only the served paths and the definitions and
//	                  parameters they refer to
//	openapi-v2.pb     the same in protobuf, converted as kube-openapi's v2 handler converts it
//	                  (gnostic openapiv2.ParseDocument, then proto.Marshal)
//	openapi-v3-<group-version>.json, .pb
//	                  /openapi/v3/<group-version> with only the served paths and the schemas
//	                  they refer to; protobuf as kube-openapi's v3 handler converts it
//	openapi-v3.json   /openapi/v3, the discovery document, listing openAPIGroupVersions with
//	                  the hash kube-openapi's handler gives (SHA-512 of the JSON, upper-case hex)
//
// Every byte of schema comes from the apiserver; only whole paths and the definitions no kept
// path refers to are left out.
func dumpOpenAPI(ctx context.Context, client *clientset.Clientset, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	restClient := client.Discovery().RESTClient()
	get := func(path string) (map[string]any, error) {
		data, err := restClient.Get().AbsPath(path).SetHeader("Accept", "application/json").DoRaw(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var doc map[string]any
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return doc, nil
	}
	var files []string
	write := func(name string, data []byte) error {
		files = append(files, name)
		return os.WriteFile(filepath.Join(dir, name), data, 0o644)
	}

	v2, err := get("/openapi/v2")
	if err != nil {
		return nil, err
	}
	v2JSON, err := json.Marshal(prune(v2, map[string]string{
		"#/definitions/": "definitions",
		"#/parameters/":  "parameters",
	}))
	if err != nil {
		return nil, err
	}
	v2Doc, err := openapiv2.ParseDocument(v2JSON)
	if err != nil {
		return nil, err
	}
	v2PB, err := proto.MarshalOptions{Deterministic: true}.Marshal(v2Doc)
	if err != nil {
		return nil, err
	}
	if err := write("openapi-v2.json", v2JSON); err != nil {
		return nil, err
	}
	if err := write("openapi-v2.pb", v2PB); err != nil {
		return nil, err
	}

	paths := map[string]any{}
	for _, gv := range openAPIGroupVersions {
		doc, err := get("/openapi/v3/" + gv)
		if err != nil {
			return nil, err
		}
		docJSON, err := json.Marshal(prune(doc, map[string]string{"#/components/schemas/": "components/schemas"}))
		if err != nil {
			return nil, err
		}
		v3Doc, err := openapiv3.ParseDocument(docJSON)
		if err != nil {
			return nil, err
		}
		docPB, err := proto.MarshalOptions{Deterministic: true}.Marshal(v3Doc)
		if err != nil {
			return nil, err
		}
		name := "openapi-v3-" + strings.ReplaceAll(gv, "/", "-")
		if err := write(name+".json", docJSON); err != nil {
			return nil, err
		}
		if err := write(name+".pb", docPB); err != nil {
			return nil, err
		}
		hash := fmt.Sprintf("%X", sha512.Sum512(docJSON))
		paths[gv] = map[string]string{"serverRelativeURL": "/openapi/v3/" + gv + "?hash=" + hash}
	}
	rootJSON, err := json.Marshal(map[string]any{"paths": paths})
	if err != nil {
		return nil, err
	}
	if err := write("openapi-v3.json", rootJSON); err != nil {
		return nil, err
	}
	return files, nil
}

// prune keeps the served paths of an OpenAPI document and, of its shared definitions, those a
// kept path refers to, directly or through other definitions. refs maps a $ref prefix
// ("#/definitions/") to where those definitions live ("definitions", or "components/schemas").
func prune(doc map[string]any, refs map[string]string) map[string]any {
	paths, _ := doc["paths"].(map[string]any)
	for p := range paths {
		if !servedPath(p) {
			delete(paths, p)
		}
	}
	table := func(where string) map[string]any {
		var node any = doc
		for _, key := range strings.Split(where, "/") {
			m, _ := node.(map[string]any)
			node = m[key]
		}
		m, _ := node.(map[string]any)
		return m
	}
	used := map[string]map[string]bool{}
	var walk func(any)
	walk = func(node any) {
		switch n := node.(type) {
		case map[string]any:
			if ref, ok := n["$ref"].(string); ok {
				for prefix, where := range refs {
					name, ok := strings.CutPrefix(ref, prefix)
					if !ok {
						continue
					}
					if used[where] == nil {
						used[where] = map[string]bool{}
					}
					if !used[where][name] {
						used[where][name] = true
						walk(table(where)[name])
					}
				}
			}
			for _, v := range n {
				walk(v)
			}
		case []any:
			for _, v := range n {
				walk(v)
			}
		}
	}
	walk(paths)
	for _, where := range refs {
		defs := table(where)
		for name := range defs {
			if !used[where][name] {
				delete(defs, name)
			}
		}
	}
	return doc
}

// compact compacts etcd to its current revision, so that a watch from any earlier
// resourceVersion is answered 410 Gone ("too old resource version").
func compact(ctx context.Context, client *clientv3.Client) (int64, error) {
	resp, err := client.Get(ctx, "compact-revision-probe")
	if err != nil {
		return 0, err
	}
	rev := resp.Header.Revision
	if _, err := client.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		return 0, err
	}
	return rev, nil
}

func createOrExists(create func() error) error {
	if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

func newCA() (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kube-apiserver-peer-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, err
}

func newServing(caKey *ecdsa.PrivateKey, ca *x509.Certificate) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	return key, der, err
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der, 0o600)
}

func writeKubeconfig(path, server string, caPEM []byte, user, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["peer"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["peer"] = &clientcmdapi.Context{Cluster: "peer", AuthInfo: user}
	cfg.CurrentContext = "peer"
	return clientcmd.WriteToFile(*cfg, path)
}

func randomHex(bytes int) string {
	b := make([]byte, bytes)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freeURL() (*url.URL, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port))
}
