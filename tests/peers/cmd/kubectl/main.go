// Command kubectl is the real kubectl, built from k8s.io/kubectl at the version pinned in
// go.mod: the same main as k8s.io/kubernetes/cmd/kubectl/kubectl.go.
//
// Build it with the version stamped as the Kubernetes release build does (see ../../README.md),
// so that `kubectl version` and the User-Agent name the release:
//
//	go build -ldflags "-X k8s.io/client-go/pkg/version.gitVersion=v1.37.2 ..." ./cmd/kubectl
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	// Import to initialize client auth plugins.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	// As upstream: set the verbosity before the command is built, so that klog works while
	// plugins and the .kuberc file are handled.
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		// Pretty-print the error and exit with an error.
		util.CheckErr(err)
	}
}
