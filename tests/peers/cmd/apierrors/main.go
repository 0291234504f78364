// Command apierrors classifies API errors with k8s.io/apimachinery's own predicates, so that
// the library's ApiError rules can be compared with upstream's on the same inputs.
//
// Each line of stdin is a JSON object {"reason": "...", "code": N}; for each, one JSON line
// goes to stdout with the answers of apierrors.IsUnauthorized, IsForbidden, IsNotFound,
// IsAlreadyExists, "expired": IsResourceExpired || IsGone (the reflector's test for a
// watch or list whose resourceVersion is too old, which relists), and the reasons
// NewGenericServerResponse gives the code when a body is not a Status (client-go's REST client
// then), for a POST and for a GET.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

type input struct {
	Reason string `json:"reason"`
	Code   int32  `json:"code"`
}

type output struct {
	Reason        string `json:"reason"`
	Code          int32  `json:"code"`
	Unauthorized  bool   `json:"unauthorized"`
	Forbidden     bool   `json:"forbidden"`
	NotFound      bool   `json:"notFound"`
	AlreadyExists bool   `json:"alreadyExists"`
	Expired       bool   `json:"expired"`
	GenericPost   string `json:"genericPost"`
	GenericGet    string `json:"genericGet"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var i input
		if err := json.Unmarshal(in.Bytes(), &i); err != nil {
			fmt.Fprintf(os.Stderr, "apierrors: bad input line %q: %v\n", in.Text(), err)
			os.Exit(2)
		}
		err := &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure,
			Reason: metav1.StatusReason(i.Reason),
			Code:   i.Code,
		}}
		generic := func(verb string) string {
			e := apierrors.NewGenericServerResponse(int(i.Code), verb,
				schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"},
				"", "", 0, true)
			return string(e.ErrStatus.Reason)
		}
		if e := out.Encode(output{
			Reason:        i.Reason,
			Code:          i.Code,
			Unauthorized:  apierrors.IsUnauthorized(err),
			Forbidden:     apierrors.IsForbidden(err),
			NotFound:      apierrors.IsNotFound(err),
			AlreadyExists: apierrors.IsAlreadyExists(err),
			Expired:       apierrors.IsResourceExpired(err) || apierrors.IsGone(err),
			GenericPost:   generic("POST"),
			GenericGet:    generic("GET"),
		}); e != nil {
			fmt.Fprintf(os.Stderr, "apierrors: %v\n", e)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "apierrors: %v\n", err)
		os.Exit(1)
	}
}
