//! deletecollection: `DELETE …/certificatesigningrequests` with label and field selectors, as
//! kube-apiserver's `DeleteCollection` handler and the generic store answer it
//! (`k8s.io/apiserver/pkg/endpoints/handlers/delete.go`, `registry/generic/registry/store.go`).
//!
//! The verb `deletecollection` is authorized first (403 for the whole request); then, as for a
//! list, the authorizer is asked per matching CSR and the ones it denies are left alone. The
//! `DeleteOptions` come from the body (JSON or protobuf) or, without a body, from the query;
//! `dryRun=All` deletes nothing and answers the same; preconditions apply to each CSR and the
//! first that fails answers 409 (the CSRs before it stay deleted, as with the store's
//! one-by-one deletes). The answer is 200 with the `CertificateSigningRequestList` of the CSRs
//! deleted, as they were just before deletion, and the list's resource version.

use std::io;

use super::auth::{Action, Verb};
use super::http::{Conn, Request};
use super::rest::{
    Ctx, authorize, delete_checked, delete_options, list_options, send_json, send_status,
};
use crate::csr::api::{CsrList, KIND_CSR, ListMeta};

/// `DELETE …/certificatesigningrequests`.
pub(super) fn delete_collection(ctx: &Ctx<'_>, conn: &mut Conn, req: &Request) -> io::Result<()> {
    if let Err(st) = authorize(ctx, Verb::DeleteCollection, None, None) {
        return send_status(conn, &st, ctx.keep);
    }
    let sel = match list_options(req, false) {
        Ok(s) => s,
        Err(st) => return send_status(conn, &st, ctx.keep),
    };
    let checked = delete_options(req).and_then(|o| Ok((o.dry_run("DeleteOptions")?, o)));
    let (dry_run, options) = match checked {
        Ok(x) => x,
        Err(st) => return send_status(conn, &st, ctx.keep),
    };
    let (rv, candidates) = {
        let st = ctx.shared.state.lock();
        (st.rv, sel.select(&st.objects, ""))
    };
    let mut deleted = Vec::new();
    for o in candidates {
        let name = o.metadata.name.clone().unwrap_or_default();
        let allowed = ctx.allowed(&Action {
            verb: Verb::DeleteCollection,
            subresource: None,
            name: Some(&name),
            object: Some(&o),
        });
        if !allowed {
            continue;
        }
        match delete_checked(ctx.shared, &name, &options, dry_run) {
            // Gone meanwhile: the store ignores NotFound here.
            None => {}
            Some(Err(st)) => return send_status(conn, &st, ctx.keep),
            Some(Ok(_)) => deleted.push(ctx.render(&o)),
        }
    }
    let list = CsrList {
        api_version: Some(ctx.version.as_str().to_owned()),
        kind: Some(format!("{KIND_CSR}List")),
        metadata: ListMeta {
            resource_version: Some(rv.to_string()),
            continue_token: None,
        },
        items: deleted,
    };
    send_json(conn, 200, &list, ctx.keep)
}
