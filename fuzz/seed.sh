#!/usr/bin/env bash
# Writes the seed corpora of the fuzz targets into DIR/<target>/, from real bytes: the PEM
# fixtures (tests/fixtures, made by openssl), client-go's own CSR bodies (tests/vectors), and
# CSRs, DER certificates and keys openssl makes from the fixture keys now. Usage:
# fuzz/seed.sh DIR. Needs openssl and base64.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$1
fx=$repo/tests/fixtures
vec=$repo/tests/vectors/client-go-csr
mkdir -p "$out"
rm -rf "${out:?}"/*
for t in pem store_pair kubeconfig client_answer watch_event server_request server_json server_protobuf x509; do
    mkdir -p "$out/$t"
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

b64() { base64 -w0 "$@"; }

# A real CSR for the node identity the targets use, made by openssl with the fixture key (PEM
# and DER), and one with SANs for a serving certificate.
openssl req -new -key "$fx/ec.key" -subj "/O=system:nodes/CN=system:node:fuzz" -out "$work/client.csr" 2>/dev/null
openssl req -new -key "$fx/ec.key" -subj "/O=system:nodes/CN=system:node:fuzz" \
    -addext "subjectAltName=DNS:fuzz,IP:10.0.0.1" -out "$work/serving.csr" 2>/dev/null
openssl req -in "$work/client.csr" -outform DER -out "$work/client.csr.der"
csr_b64=$(b64 "$work/client.csr")
serving_b64=$(b64 "$work/serving.csr")
cert_b64=$(b64 "$fx/ec.crt")

# pem, store_pair, x509: the fixtures as they are, pairs combined and split, DER forms.
for f in "$fx"/*.crt "$fx"/*.key "$fx"/*.pem; do
    cp "$f" "$out/pem/"
    cp "$f" "$out/store_pair/"
done
for base in ec store two-certs expired apiserver bootstrap; do
    cat "$fx/$base.crt" "$fx/$base.key" >"$out/pem/$base-pair.pem"
    cp "$out/pem/$base-pair.pem" "$out/store_pair/"
    { cat "$fx/$base.crt"; printf '\0'; cat "$fx/$base.key"; } >"$out/pem/$base-split"
    cp "$out/pem/$base-split" "$out/store_pair/"
done
openssl pkey -in "$fx/ec.key" -outform DER -out "$out/pem/ec.key.der" 2>/dev/null
for f in "$fx"/*.crt; do
    cp "$f" "$out/x509/"
    openssl x509 -in "$f" -outform DER -out "$out/x509/$(basename "$f").der" 2>/dev/null || true
done
cp "$work/client.csr" "$work/serving.csr" "$work/client.csr.der" "$out/x509/"

# kubeconfig: inline data and file references, tokens, several contexts.
cat >"$out/kubeconfig/inline.yaml" <<EOF
apiVersion: v1
kind: Config
current-context: node
clusters:
- name: k
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: $cert_b64
    tls-server-name: kubernetes
contexts:
- name: node
  context:
    cluster: k
    user: node
- name: boot
  context:
    cluster: k
    user: boot
users:
- name: node
  user:
    client-certificate-data: $cert_b64
    client-key-data: $(b64 "$fx/ec.key")
- name: boot
  user:
    token: abcdef.0123456789abcdef
EOF
cat >"$out/kubeconfig/files.yaml" <<'EOF'
apiVersion: v1
kind: Config
current-context: c
preferences: {}
clusters:
- name: k
  cluster:
    server: https://[::1]:6443
    certificate-authority: ca.crt
    proxy-url: http://127.0.0.1:3128
    insecure-skip-tls-verify: false
contexts:
- name: c
  context:
    cluster: k
    user: u
    namespace: default
users:
- name: u
  user:
    client-certificate: kubelet.crt
    client-key: kubelet.key
    tokenFile: token
EOF

# client_answer: first byte 0 (v1) / 1 (v1beta1) + bit 1-2 the kind of answer.
for f in "$vec"/*.json; do
    n=$(basename "$f" .json)
    { printf '\x00'; cat "$f"; } >"$out/client_answer/get-$n"
    { printf '\x02{"kind":"CertificateSigningRequestList","apiVersion":"certificates.k8s.io/v1","metadata":{"resourceVersion":"9"},"items":['; cat "$f"; printf ']}'; } >"$out/client_answer/list-$n"
done
# The vectors made ours: name csr-fuzz, uid fuzz-uid, the real CSR and certificate.
ours() {
    sed -e 's/"csr-abcde"/"csr-fuzz"/' -e 's/"generateName":"csr-"/"name":"csr-fuzz","uid":"fuzz-uid"/' \
        -e 's/"resourceVersion":"7"/"resourceVersion":"7","uid":"fuzz-uid"/' \
        -e "s|\"request\":\"[^\"]*\"|\"request\":\"$csr_b64\"|" \
        -e "s|\"certificate\":\"[^\"]*\"|\"certificate\":\"$cert_b64\"|" "$1"
}
for f in "$vec"/*.json; do
    n=$(basename "$f" .json)
    { printf '\x00'; ours "$f"; } >"$out/client_answer/ours-$n"
done
printf '\x04\x10{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}' >"$out/client_answer/status-410"
printf '\x04\x1d{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"m","reason":"TooManyRequests","code":429,"details":{"causes":[{"reason":"r","message":"x","field":"f"}],"retryAfterSeconds":3}}' >"$out/client_answer/status-429"
printf '\x04\x64<html>bad gateway</html>' >"$out/client_answer/generic-500"

# watch_event: event streams from the vectors (ours and as they are), bookmarks, errors.
{
    printf '\x00'
    for n in stored-spec approval status-issued; do
        printf '{"type":"MODIFIED","object":'; ours "$vec/$n.json"; printf '}\n'
    done
} >"$out/watch_event/ours"
{
    printf '\x00'
    printf '{"type":"BOOKMARK","object":{"kind":"CertificateSigningRequest","apiVersion":"certificates.k8s.io/v1","metadata":{"resourceVersion":"12","annotations":{"k8s.io/initial-events-end":"true"}},"spec":{"request":null,"signerName":""},"status":{}}}\n'
    printf '{"type":"ADDED","object":'; cat "$vec/stored-spec.json"; printf '}\n\n'
    printf '{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}\n'
} >"$out/watch_event/mixed"
{ printf '\x00{"type":"DELETED","object":'; ours "$vec/approval.json"; printf '}\n'; } >"$out/watch_event/deleted"
{ printf '\x00{"type":"MODIFIED","object":'; ours "$vec/approval.json" | sed 's/"Approved"/"Denied"/'; printf '}\n'; } >"$out/watch_event/denied"

# server_json and server_protobuf: client-go's bodies, and ours with a real CSR.
cp "$vec"/*.json "$out/server_json/"
cp "$vec"/*.pb "$out/server_protobuf/"
ours "$vec/create.json" >"$out/server_json/create-real-csr.json"
sed "s|\"request\":\"[^\"]*\"|\"request\":\"$serving_b64\"|; s|\"client auth\"|\"server auth\"|; s|kube-apiserver-client-kubelet|kubelet-serving|" \
    "$vec/create.json" >"$out/server_json/create-serving.json"

# server_request: the requests of client-go, kubectl and the kubelet (paths, headers and
# bodies as they send them), over one connection each.
req() { # NAME METHOD PATH CONTENT-TYPE BODY-FILE [more request bytes appended]
    local name=$1 method=$2 path=$3 type=$4 body=$5
    {
        printf '%s %s HTTP/1.1\r\nHost: 127.0.0.1:6443\r\nUser-Agent: kubelet/v1.37.2 (linux/amd64) kubernetes/abcdef\r\nAuthorization: Bearer fuzz-admin\r\nAccept: application/vnd.kubernetes.protobuf, */*\r\n' "$method" "$path"
        if [[ -n $body ]]; then
            printf 'Content-Type: %s\r\nContent-Length: %d\r\n' "$type" "$(wc -c <"$body")"
        fi
        printf '\r\n'
        [[ -z $body ]] || cat "$body"
    } >>"$out/server_request/$name"
}
coll=/apis/certificates.k8s.io/v1/certificatesigningrequests
ours "$vec/create.json" >"$work/create.json"
sed 's/"name":"csr-fuzz",//' "$work/create.json" >"$work/create-gen.json"
req create-pb POST "$coll" application/vnd.kubernetes.protobuf "$vec/create.pb"
req create-json POST "$coll?fieldValidation=Strict" application/json "$work/create.json"
req create-json POST "$coll?fieldValidation=Warn&dryRun=All" application/json "$work/create-gen.json"
req create-json GET "$coll/csr-fuzz" "" ""
req create-then-watch POST "$coll" application/json "$work/create.json"
req create-then-watch GET "$coll?fieldSelector=metadata.name%3Dcsr-fuzz&limit=500&resourceVersion=0" "" ""
req create-then-watch GET "$coll?watch=true&fieldSelector=metadata.name%3Dcsr-fuzz&allowWatchBookmarks=true&timeoutSeconds=300" "" ""
ours "$vec/approval.json" >"$work/approval.json"
req approve POST "$coll" application/json "$work/create.json"
req approve PUT "$coll/csr-fuzz/approval" application/json "$work/approval.json"
req approve PUT "$coll/csr-fuzz/approval" application/vnd.kubernetes.protobuf "$vec/approval.pb"
ours "$vec/status-issued.json" >"$work/status.json"
req status PUT "$coll/csr-fuzz/status" application/json "$work/status.json"
req status PUT "$coll/csr-abcde/status" application/vnd.kubernetes.protobuf "$vec/status-issued.pb"
printf '[{"op":"add","path":"/metadata/labels/x","value":"y"},{"op":"test","path":"/spec/signerName","value":"kubernetes.io/kube-apiserver-client-kubelet"}]' >"$work/json-patch"
printf '{"metadata":{"labels":{"x":null}}}' >"$work/merge-patch"
printf '{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest","metadata":{"name":"csr-fuzz"},"status":{"conditions":[{"type":"Approved","status":"True","reason":"R"}]}}' >"$work/apply"
req patch POST "$coll" application/json "$work/create.json"
req patch PATCH "$coll/csr-fuzz" application/json-patch+json "$work/json-patch"
req patch PATCH "$coll/csr-fuzz" application/merge-patch+json "$work/merge-patch"
req patch PATCH "$coll/csr-fuzz/approval?fieldManager=kubectl&force=true" application/apply-patch+yaml "$work/apply"
printf '{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background","preconditions":{"uid":"x"}}' >"$work/delete"
req delete DELETE "$coll/csr-fuzz" application/json "$work/delete"
req delete DELETE "$coll?labelSelector=app%3Dvec,tier+notin+(a,b)&fieldSelector=spec.signerName!%3Dx" "" ""
req discovery GET /apis "" ""
req discovery GET /apis/certificates.k8s.io/v1 "" ""
req discovery GET /openapi/v3 "" ""
req discovery GET /version "" ""
printf '{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","spec":{"resourceAttributes":{"verb":"create","group":"certificates.k8s.io","resource":"certificatesigningrequests"}}}' >"$work/review"
req review POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews application/json "$work/review"
# A chunked body, HTTP/1.0, and a bootstrap token.
{
    printf 'POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abcdef.0123456789abcdef\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n' "$coll"
    printf '%x\r\n' "$(wc -c <"$work/create-gen.json")"; cat "$work/create-gen.json"; printf '\r\n0\r\nX-Trailer: 1\r\n\r\n'
    printf 'GET /healthz HTTP/1.0\r\n\r\n'
} >"$out/server_request/chunked"
