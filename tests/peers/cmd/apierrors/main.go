// Command apierrors classifies API errors with k8s.io/apimachinery's own predicates, so that
// the library's ApiError rules can be compared with upstream's on the same inputs.
//
// Each line of stdin is a JSON object {"reason": "...", "code": N}; for each, one JSON line
// goes to stdout with the answers of apierrors.IsUnauthorized, IsForbidden, IsNotFound,
// IsAlreadyExists, and "expired": IsResourceExpired || IsGone (the reflector's test for a
// watch or list whose resourceVersion is too old, which relists).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
		if e := out.Encode(output{
			Reason:        i.Reason,
			Code:          i.Code,
			Unauthorized:  apierrors.IsUnauthorized(err),
			Forbidden:     apierrors.IsForbidden(err),
			NotFound:      apierrors.IsNotFound(err),
			AlreadyExists: apierrors.IsAlreadyExists(err),
			Expired:       apierrors.IsResourceExpired(err) || apierrors.IsGone(err),
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
