//! `Accept` negotiation as kube-apiserver does it, in its two stages, for a server whose only
//! representation is JSON.
//!
//! 1. Route selection (go-restful's `Route.matchesAccept`): each comma-separated entry, with
//!    its parameters cut off, must be `*/*` or exactly a media type the route produces
//!    (case-sensitive; `application/*` is not enough). Otherwise 406 with go-restful's message
//!    `406: Not Acceptable\n\nAvailable representations: …` (the apiserver's
//!    `NewGenericServerResponse(406)` keeps it) and `details: {}`.
//! 2. The handler (`negotiation.NegotiateOutputMediaType`): the entries sorted as goautoneg
//!    does (quality, then specific before wildcard), the first that names JSON (`application/json`,
//!    `application/*`, `*/*`) with parameters the endpoint allows wins: `as=Table` or
//!    `as=PartialObjectMetadata[List]` with `g=meta.k8s.io` and `v=v1` or `v1beta1` on resource
//!    endpoints, `stream=watch`, `sv=v1`, `pretty`, `export`, `profile`, and unknown ones. No
//!    entry left is 406 `only the following media types are accepted: application/json`.
//!
//! kube-apiserver also produces YAML and protobuf; this server does not, so an `Accept` naming
//! only those gets 406 here (client-go always adds `application/json` after protobuf, and
//! takes JSON answers by their `Content-Type`).

use crate::csr::api::{Status, StatusDetails};

/// The JSON media type, the only one produced.
pub(crate) const JSON: &str = "application/json";
/// The streaming form of it, produced by list routes (`?watch=true`) and watch routes.
pub(crate) const JSON_WATCH: &str = "application/json;stream=watch";

/// What a route produces (the media types in its go-restful `Produces`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Get, create, update, delete and discovery: `application/json`.
    Object,
    /// List and watch routes: also `application/json;stream=watch`.
    Stream,
}

impl Route {
    fn produces(self) -> &'static [&'static str] {
        match self {
            Route::Object => &[JSON],
            Route::Stream => &[JSON, JSON_WATCH],
        }
    }
}

/// The shape an answer takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// The object (or list) itself.
    Plain,
    /// A `meta.k8s.io` `Table`, in this version (`v1` or `v1beta1`).
    Table(&'static str),
    /// `PartialObjectMetadata` in this version.
    Partial(&'static str),
    /// `PartialObjectMetadataList` in this version.
    PartialList(&'static str),
}

/// One `Accept` entry, as goautoneg parses it.
struct Clause<'a> {
    type_: &'a str,
    subtype: &'a str,
    q: f64,
    params: Vec<(&'a str, &'a str)>,
}

fn parse(header: &str) -> Vec<Clause<'_>> {
    let mut out = Vec::new();
    for part in header.split(',') {
        let mut pieces = part.split(';');
        let range = pieces.next().unwrap_or("").trim();
        let (type_, subtype) = match range.split_once('/') {
            Some((t, s)) => (t.trim(), s.trim()),
            None if range == "*" => ("*", "*"),
            None => continue,
        };
        let mut q = 1.0;
        let mut params = Vec::new();
        for p in pieces {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            if k == "q" {
                q = v.parse().unwrap_or(0.0);
            } else {
                params.push((k, v));
            }
        }
        out.push(Clause {
            type_,
            subtype,
            q,
            params,
        });
    }
    // goautoneg's order: higher quality first, then a concrete type or subtype before `*`.
    out.sort_by(|a, b| {
        b.q.partial_cmp(&a.q)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then((a.type_ == "*").cmp(&(b.type_ == "*")))
            .then((a.subtype == "*").cmp(&(b.subtype == "*")))
    });
    out
}

/// Stage 1: whether the route takes this `Accept` at all; `Err` is the 406.
pub(crate) fn route_accepts(accept: Option<&str>, route: Route) -> Result<(), Box<Status>> {
    let accept = match accept {
        None | Some("") => return Ok(()),
        Some(a) => a,
    };
    let trim = |c: char| c == ' ' || c == '\t';
    let ok = accept.split(',').any(|entry| {
        let media = entry.split(';').next().unwrap_or("").trim_matches(trim);
        media == "*/*" || route.produces().contains(&media)
    });
    if ok {
        return Ok(());
    }
    Err(not_acceptable(format!(
        "406: Not Acceptable\n\nAvailable representations: {}",
        route.produces().join(", ")
    )))
}

/// Stage 2: the shape of the answer. `conversions` is true on resource endpoints (Table and
/// PartialObjectMetadata allowed), false on discovery.
pub(crate) fn output(accept: Option<&str>, conversions: bool) -> Result<Output, Box<Status>> {
    let accept = match accept {
        None | Some("") => return Ok(Output::Plain),
        Some(a) => a,
    };
    for c in parse(accept) {
        let json = c.type_ == "*" && c.subtype == "*"
            || c.type_ == "application" && (c.subtype == "json" || c.subtype == "*");
        if !json {
            continue;
        }
        if let Some(out) = clause_output(&c, conversions) {
            return Ok(out);
        }
    }
    Err(not_acceptable(format!(
        "only the following media types are accepted: {JSON}"
    )))
}

/// `acceptMediaTypeOptions` with the resource endpoints' `AllowsMediaTypeTransform`.
fn clause_output(c: &Clause<'_>, conversions: bool) -> Option<Output> {
    let (mut kind, mut group, mut version) = (None, None, None);
    for &(k, v) in &c.params {
        match k {
            "as" => kind = Some(v),
            "g" => group = Some(v),
            "v" => version = Some(v),
            "stream" if !v.is_empty() && v != "watch" => return None,
            "sv" if !v.is_empty() && v != "v1" => return None,
            _ => {}
        }
    }
    if kind.is_none() && group.is_none() && version.is_none() {
        return Some(Output::Plain);
    }
    if !conversions || group != Some("meta.k8s.io") {
        return None;
    }
    let version = match version {
        Some("v1") => "v1",
        Some("v1beta1") => "v1beta1",
        _ => return None,
    };
    match kind {
        Some("Table") => Some(Output::Table(version)),
        Some("PartialObjectMetadata") => Some(Output::Partial(version)),
        Some("PartialObjectMetadataList") => Some(Output::PartialList(version)),
        _ => None,
    }
}

/// A 406 `NotAcceptable` `Status`.
pub(crate) fn not_acceptable(message: String) -> Box<Status> {
    let mut st = Status::failure(406, "NotAcceptable", message);
    st.details = Some(StatusDetails::default());
    Box::new(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stage 1 against go-restful v3.13.0's `matchesAccept` (run with routes producing the
    /// apiserver's types): `application/*`, `text/*` and a differently cased type are refused,
    /// parameters and quality are ignored.
    #[test]
    fn routes_accept_as_go_restful() {
        for (accept, ok) in [
            (None, true),
            (Some("*/*"), true),
            (Some("application/json"), true),
            (Some("application/json; q=0"), true),
            (Some("application/json;as=Foo"), true),
            (Some("text/html, */*;q=0.1"), true),
            (
                Some("application/vnd.kubernetes.protobuf,application/json"),
                true,
            ),
            (Some("application/*"), false),
            (Some("text/*"), false),
            (Some("Application/JSON"), false),
            (Some("application/vnd.kubernetes.protobuf"), false),
            (Some("application/yaml"), false),
        ] {
            assert_eq!(
                route_accepts(accept, Route::Object).is_ok(),
                ok,
                "{accept:?}"
            );
        }
        let st = route_accepts(Some("text/html"), Route::Stream).unwrap_err();
        assert_eq!(
            st.message.as_deref(),
            Some(
                "406: Not Acceptable\n\nAvailable representations: application/json, application/json;stream=watch"
            )
        );
    }

    #[test]
    fn outputs_follow_negotiate_media_type_options() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(output(Some(kubectl), true).unwrap(), Output::Table("v1"));
        assert_eq!(output(Some(kubectl), false).unwrap(), Output::Plain);
        assert_eq!(
            output(
                Some("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"),
                true
            )
            .unwrap(),
            Output::PartialList("v1")
        );
        assert_eq!(
            output(
                Some("application/json;q=0.5,*/*;as=Table;g=meta.k8s.io;v=v1"),
                true
            )
            .unwrap(),
            Output::Table("v1")
        );
        assert_eq!(
            output(Some("application/json;stream=watch"), true).unwrap(),
            Output::Plain
        );
        for bad in [
            "application/json;as=Foo;g=meta.k8s.io;v=v1",
            "application/json;as=Table;g=other.io;v=v1",
            "application/json;as=APIGroupDiscoveryList;g=apidiscovery.k8s.io;v=v2",
            "application/json;stream=other",
            "text/plain",
        ] {
            let st = output(Some(bad), true).unwrap_err();
            assert_eq!(st.code, Some(406), "{bad}");
            assert_eq!(
                st.message.as_deref(),
                Some("only the following media types are accepted: application/json")
            );
        }
    }
}
