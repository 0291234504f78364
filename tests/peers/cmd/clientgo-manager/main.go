// Command clientgo-manager drives client-go's own certificate manager
// (k8s.io/client-go/util/certificate, the one the kubelet uses for its client
// and serving certificates) against the cluster of a kubeconfig, and reports
// every certificate it observes.
//
// It builds a Manager with certificate.NewManager from a FileStore, a CSR
// template, usages, a signer name, an optional requested lifetime and a
// ClientsetFn made from the kubeconfig with clientcmd, starts it, and prints
// one JSON line on stdout per distinct certificate Current() returns:
//
//	{"event":"certificate","index":0,"serial":"...","notBefore":"...","notAfter":"...","elapsedMs":123.4}
//
// index 0 is the first certificate; index N is the N-th rotation. After
// --rotations rotations it prints a summary line ({"event":"done",...}), stops
// the manager and exits 0. If that does not happen within --timeout it exits 2.
// Bad flags exit 1.
//
// client-go's own log (klog) goes to stderr, unchanged: error lines begin with
// "E" followed by the date (klog's header, e.g. "E1130 21:15:02.123456"), so a
// caller can assert that client-go complained about nothing.
//
// client-go reads its feature gates from the environment itself:
// KUBE_FEATURE_WatchListClient=false turns off the watch-list streaming that
// the manager's wait for the issued certificate (csr.WaitForCertificate →
// watchtools.UntilWithSync → a Reflector) uses by default since client-go
// v0.35; the wait then lists and watches instead.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/certificate"
	"k8s.io/klog/v2"
)

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

// countingTransport counts the responses by their Content-Type, so a caller can
// check which encoding the server answered in.
type countingTransport struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen map[string]int
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil {
		ct := resp.Header.Get("Content-Type")
		if i := strings.IndexByte(ct, ';'); i >= 0 {
			ct = ct[:i]
		}
		key := req.Method + " " + ct
		t.mu.Lock()
		t.seen[key]++
		t.mu.Unlock()
	}
	return resp, err
}

func (t *countingTransport) snapshot() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.seen))
	for k, v := range t.seen {
		out[k] = v
	}
	return out
}

// notifyingStore wraps a Store and signals each successful Update, so the
// first certificate's arrival is timed without polling.
type notifyingStore struct {
	certificate.Store
	updated chan struct{}
}

func (s *notifyingStore) Update(cert, key []byte) (*tls.Certificate, error) {
	c, err := s.Store.Update(cert, key)
	if err == nil {
		select {
		case s.updated <- struct{}{}:
		default:
		}
	}
	return c, err
}

func emit(v map[string]any) {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "clientgo-manager: encoding output: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(string(b))
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "clientgo-manager: "+format+"\n", args...)
	klog.Flush()
	os.Exit(code)
}

func main() {
	var (
		kubeconfig   = flag.String("kubeconfig", "", "kubeconfig of the cluster to request certificates from (required)")
		certDir      = flag.String("cert-dir", "", "directory of the FileStore (required)")
		pairName     = flag.String("pair-name", "clientgo", "FileStore pair name: files <pair-name>-<timestamp>.pem and <pair-name>-current.pem")
		signerName   = flag.String("signer-name", "kubernetes.io/kube-apiserver-client-kubelet", "spec.signerName of the CSRs")
		cn           = flag.String("cn", "", "subject common name (required)")
		usagesFlag   = flag.String("usages", "digital signature,client auth", "comma-separated key usages (spec.usages)")
		lifetime     = flag.Duration("requested-lifetime", 0, "RequestedCertificateLifetime (spec.expirationSeconds); 0 leaves it unset")
		rotations    = flag.Int("rotations", 3, "number of rotations to wait for after the first certificate")
		timeout      = flag.Duration("timeout", 60*time.Second, "give up (exit 2) after this long")
		contentType  = flag.String("content-type", "json", "json or protobuf: the rest config's ContentType")
		benchCurrent = flag.Int("bench-current", 0, "after the first certificate, time this many Current() calls and print the cost")
		orgs, dns    list
		ips          list
	)
	flag.Var(&orgs, "o", "subject organization (repeatable)")
	flag.Var(&dns, "dns", "DNS SAN (repeatable)")
	flag.Var(&ips, "ip", "IP SAN (repeatable)")
	klog.InitFlags(nil) // -v, -logtostderr (default true) etc.
	flag.Parse()
	defer klog.Flush()

	if *kubeconfig == "" || *certDir == "" || *cn == "" {
		fail(1, "--kubeconfig, --cert-dir and --cn are required")
	}
	if *rotations < 0 {
		fail(1, "--rotations must not be negative")
	}
	var ipAddrs []net.IP
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			fail(1, "--ip %q is not an IP address", s)
		}
		ipAddrs = append(ipAddrs, ip)
	}
	var usages []certificatesv1.KeyUsage
	for _, u := range strings.Split(*usagesFlag, ",") {
		if u = strings.TrimSpace(u); u != "" {
			usages = append(usages, certificatesv1.KeyUsage(u))
		}
	}

	restConfig, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail(1, "loading --kubeconfig: %v", err)
	}
	switch *contentType {
	case "json":
		restConfig.ContentType = runtime.ContentTypeJSON
		restConfig.AcceptContentTypes = runtime.ContentTypeJSON
	case "protobuf":
		// As the kubelet's --kube-api-content-type default.
		restConfig.ContentType = runtime.ContentTypeProtobuf
		restConfig.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	default:
		fail(1, "--content-type must be json or protobuf, not %q", *contentType)
	}
	counter := &countingTransport{seen: map[string]int{}}
	restConfig.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		counter.next = rt
		return counter
	})

	fileStore, err := certificate.NewFileStore(*pairName, *certDir, *certDir, "", "")
	if err != nil {
		fail(1, "creating the FileStore: %v", err)
	}
	store := &notifyingStore{Store: fileStore, updated: make(chan struct{}, 1)}

	cfg := &certificate.Config{
		ClientsetFn: func(_ *tls.Certificate) (clientset.Interface, error) {
			return clientset.NewForConfig(restConfig)
		},
		Template: &x509.CertificateRequest{
			Subject:     pkix.Name{CommonName: *cn, Organization: orgs},
			DNSNames:    dns,
			IPAddresses: ipAddrs,
		},
		SignerName:       *signerName,
		Usages:           usages,
		CertificateStore: store,
	}
	if *lifetime > 0 {
		cfg.RequestedCertificateLifetime = lifetime
	}

	start := time.Now()
	m, err := certificate.NewManager(cfg)
	if err != nil {
		fail(1, "certificate.NewManager: %v", err)
	}
	m.Start()
	defer m.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()

	var lastSerial string
	index := 0
	for {
		if cur := m.Current(); cur != nil && cur.Leaf != nil && cur.Leaf.SerialNumber.String() != lastSerial {
			leaf := cur.Leaf
			lastSerial = leaf.SerialNumber.String()
			emit(map[string]any{
				"event":     "certificate",
				"index":     index,
				"serial":    lastSerial,
				"subject":   leaf.Subject.String(),
				"notBefore": leaf.NotBefore.UTC().Format(time.RFC3339Nano),
				"notAfter":  leaf.NotAfter.UTC().Format(time.RFC3339Nano),
				"elapsedMs": float64(time.Since(start).Microseconds()) / 1000,
			})
			if index == 0 && *benchCurrent > 0 {
				t0 := time.Now()
				for i := 0; i < *benchCurrent; i++ {
					_ = m.Current()
				}
				emit(map[string]any{
					"event":   "current_cost",
					"calls":   *benchCurrent,
					"nsPerOp": float64(time.Since(t0).Nanoseconds()) / float64(*benchCurrent),
				})
			}
			if index == *rotations {
				seen := counter.snapshot()
				emit(map[string]any{
					"event":     "done",
					"rotations": index,
					"elapsedMs": float64(time.Since(start).Microseconds()) / 1000,
					"responses": seen,
				})
				return
			}
			index++
		}
		select {
		case <-ctx.Done():
			fail(2, "timed out after %v with %d certificate(s) observed, waiting for rotation %d", *timeout, index, index)
		case <-store.updated:
			// The manager publishes the pair just after storing it: look closely for a
			// moment, so the time of the first certificate is not rounded to the tick.
			for t := time.Now(); time.Since(t) < time.Second; time.Sleep(20 * time.Microsecond) {
				if cur := m.Current(); cur != nil && cur.Leaf != nil && cur.Leaf.SerialNumber.String() != lastSerial {
					break
				}
			}
		case <-tick.C:
		}
	}
}
