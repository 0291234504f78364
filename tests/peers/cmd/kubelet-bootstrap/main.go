// Command kubelet-bootstrap runs the kubelet's own TLS bootstrap,
// k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap.LoadClientCert: with the bootstrap
// kubeconfig's credentials it requests a node client certificate through the CSR API, stores
// it in the kubelet-client file store under the certificate directory and writes the kubeconfig
// that points at it. The library's kubelet bootstrap is compared with what this writes.
//
// Usage: kubelet-bootstrap --kubeconfig K --bootstrap-kubeconfig B --cert-dir D --node-name N
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "the kubeconfig to write")
	bootstrapKubeconfig := flag.String("bootstrap-kubeconfig", "", "the bootstrap kubeconfig")
	certDir := flag.String("cert-dir", "", "the certificate directory")
	nodeName := flag.String("node-name", "", "the node's name")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := bootstrap.LoadClientCert(ctx, *kubeconfig, *bootstrapKubeconfig, *certDir, types.NodeName(*nodeName))
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubelet bootstrap: %v\n", err)
		os.Exit(1)
	}
}
