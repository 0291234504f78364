//! Which proxy a client uses, with the rules of Go's `net/http.ProxyFromEnvironment`
//! (`golang.org/x/net/http/httpproxy`), which client-go uses when a kubeconfig has no
//! `proxy-url`, and client-go's parsing of `proxy-url`.
//!
//! From the environment:
//! - an `https://` server is reached through `HTTPS_PROXY` (else `https_proxy`), an `http://`
//!   server through `HTTP_PROXY` (else `http_proxy`); `ALL_PROXY` is never read, and
//!   `HTTP_PROXY` never applies to `https://`. An empty variable counts as unset, so the
//!   upper-case one wins when both are set.
//! - `NO_PROXY` (else `no_proxy`) is a comma-separated list, spaces around entries ignored,
//!   case-insensitive: `*` (no proxy at all), an IP address, a CIDR range, a domain name
//!   (`foo.com` matches `foo.com` and every subdomain, `.foo.com` and `*.foo.com` only
//!   subdomains), each optionally with `:port` (`[v6]:port` for IPv6), which then must equal the
//!   server's port (443 / 80 when the URL has none).
//! - `localhost` and loopback addresses (127.0.0.0/8, `::1`) are never proxied.
//! - a value without a scheme is an `http://` proxy; a `REQUEST_METHOD` in the environment (a
//!   CGI program) makes an `HTTP_PROXY` for an `http://` server an error.
//!
//! Non-ASCII `NO_PROXY` entries are compared as written: Go converts them to punycode, but a
//! server URL can only name an ASCII host here, so such an entry never matches.

use std::net::IpAddr;

/// The proxy settings of the environment, as Go's `httpproxy.FromEnvironment` reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProxyEnv {
    pub(crate) http_proxy: String,
    pub(crate) https_proxy: String,
    pub(crate) no_proxy: String,
    pub(crate) cgi: bool,
}

/// The first of `names` that is set to a non-empty value (Go's `getEnvAny`).
fn env_any(lookup: &impl Fn(&str) -> Option<String>, names: &[&str]) -> String {
    names
        .iter()
        .filter_map(|n| lookup(n))
        .find(|v| !v.is_empty())
        .unwrap_or_default()
}

impl ProxyEnv {
    /// Reads the process environment.
    pub(crate) fn from_env() -> ProxyEnv {
        ProxyEnv::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the variables through `lookup`.
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> ProxyEnv {
        ProxyEnv {
            http_proxy: env_any(&lookup, &["HTTP_PROXY", "http_proxy"]),
            https_proxy: env_any(&lookup, &["HTTPS_PROXY", "https_proxy"]),
            no_proxy: env_any(&lookup, &["NO_PROXY", "no_proxy"]),
            cgi: lookup("REQUEST_METHOD").is_some_and(|v| !v.is_empty()),
        }
    }

    /// The proxy URL for a request to `scheme://host[:port]` (`host` without brackets), or
    /// `None` to connect directly (Go's `proxyForURL`).
    ///
    /// # Errors
    /// `HTTP_PROXY` would apply in a CGI environment.
    pub(crate) fn proxy_for(
        &self,
        scheme: &str,
        host: &str,
        port: Option<u16>,
    ) -> Result<Option<String>, String> {
        let proxy = match scheme {
            "https" => parse_proxy(&self.https_proxy),
            "http" => {
                let p = parse_proxy(&self.http_proxy);
                if p.is_some() && self.cgi {
                    return Err(
                        "refusing to use HTTP_PROXY value in CGI environment (REQUEST_METHOD is set)"
                            .into(),
                    );
                }
                p
            }
            _ => None,
        };
        let Some(proxy) = proxy else {
            return Ok(None);
        };
        let port = match (port, scheme) {
            (Some(p), _) => p.to_string(),
            (None, "https") => "443".into(),
            (None, _) => "80".into(),
        };
        if NoProxy::parse(&self.no_proxy).use_proxy(host, &port) {
            Ok(Some(proxy))
        } else {
            Ok(None)
        }
    }
}

/// Go's `parseProxy`: a value whose scheme is not `http`, `https` or `socks5` (or that has
/// none) is taken as `http://value`, unless it has a scheme of its own (`foo://host`), which is
/// kept (and later refused).
fn parse_proxy(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    match value.split_once("://") {
        Some((scheme, _))
            if ["http", "https", "socks5"].contains(&scheme.to_ascii_lowercase().as_str()) =>
        {
            Some(value.to_owned())
        }
        // `http://foo://host` does not parse in Go, so the value stays as it is.
        Some(_) => Some(value.to_owned()),
        None => Some(format!("http://{value}")),
    }
}

/// Go's `net.SplitHostPort`: `host:port` or `[host]:port`; the port may be empty.
fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    let i = hostport.rfind(':')?;
    let (host, start_after_host) = if let Some(rest) = hostport.strip_prefix('[') {
        let end = rest.find(']')? + 1;
        if end + 1 != i {
            return None;
        }
        (&hostport[1..end], end + 1)
    } else {
        let host = &hostport[..i];
        if host.contains(':') {
            return None;
        }
        (host, 0)
    };
    let checked_from = if start_after_host == 0 { 0 } else { 1 };
    if hostport[checked_from..].contains('[') || hostport[start_after_host..].contains(']') {
        return None;
    }
    Some((host, &hostport[i + 1..]))
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// An IP range in CIDR notation (Go's `net.ParseCIDR`); an IPv4-mapped IPv6 range is kept as
/// the IPv4 range it covers.
fn parse_cidr(s: &str) -> Option<(IpAddr, u32)> {
    let (ip, bits) = s.split_once('/')?;
    if bits.is_empty() || bits.len() > 3 || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u32 = bits.parse().ok()?;
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => (bits <= 32).then_some((IpAddr::V4(v4), bits)),
        IpAddr::V6(_) if bits > 128 => None,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if bits >= 96 => Some((IpAddr::V4(v4), bits - 96)),
            _ => Some((IpAddr::V6(v6), bits)),
        },
    }
}

/// Whether `ip` is inside the range (Go's `IPNet.Contains`: the address families must agree).
fn cidr_contains((net, bits): (IpAddr, u32), ip: IpAddr) -> bool {
    match (net, ip.to_canonical()) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            n.to_bits() & mask == i.to_bits() & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            n.to_bits() & mask == i.to_bits() & mask
        }
        _ => false,
    }
}

/// A parsed `NO_PROXY` list (Go's `config.init`).
#[derive(Debug, Default)]
struct NoProxy {
    all: bool,
    cidrs: Vec<(IpAddr, u32)>,
    ips: Vec<(IpAddr, String)>,
    /// `(".suffix", port, also the suffix without its dot)`.
    domains: Vec<(String, String, bool)>,
}

impl NoProxy {
    fn parse(list: &str) -> NoProxy {
        let mut np = NoProxy::default();
        for entry in list.split(',') {
            let p = entry.trim().to_ascii_lowercase();
            if p.is_empty() {
                continue;
            }
            if p == "*" {
                return NoProxy {
                    all: true,
                    ..NoProxy::default()
                };
            }
            if let Some(cidr) = parse_cidr(&p) {
                np.cidrs.push(cidr);
                continue;
            }
            let (host, port) = match split_host_port(&p) {
                Some((h, port)) => {
                    if h.is_empty() {
                        continue; // malformed (":1"), ignored as Go does
                    }
                    (h.to_owned(), port.to_owned())
                }
                None => (p.clone(), String::new()),
            };
            if let Some(ip) = parse_ip(&host) {
                np.ips.push((ip, port));
                continue;
            }
            let host = host
                .strip_prefix('*')
                .filter(|h| h.starts_with('.'))
                .unwrap_or(&host);
            let (suffix, match_host) = match host.strip_prefix('.') {
                Some(_) => (host.to_owned(), false),
                None => (format!(".{host}"), true),
            };
            np.domains.push((suffix, port, match_host));
        }
        np
    }

    /// Go's `useProxy` for a request to `host` (no brackets) on `port`.
    fn use_proxy(&self, host: &str, port: &str) -> bool {
        if host == "localhost" {
            return false;
        }
        let ip = parse_ip(host);
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return false;
        }
        if self.all {
            return false;
        }
        let host = host.trim().to_ascii_lowercase();
        if let Some(ip) = ip {
            if self.cidrs.iter().any(|c| cidr_contains(*c, ip)) {
                return false;
            }
            if self
                .ips
                .iter()
                .any(|(m, p)| *m == ip && (p.is_empty() || p == port))
            {
                return false;
            }
            // Go's domainMatch never matches an IP host: `.0.0.1` does not exempt 10.0.0.1.
            return true;
        }
        !self.domains.iter().any(|(suffix, p, match_host)| {
            (host.ends_with(suffix.as_str()) || (*match_host && host == suffix[1..]))
                && (p.is_empty() || p == port)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's `UseProxyTests` with its `noProxy` list (httpproxy's proxy_test.go): `true` means
    /// the proxy is used for `host:80`.
    const GO_NO_PROXY: &str = "foobar.com, .barbaz.net, *.wildcard.io, 192.168.1.1, 192.168.1.2:81, 192.168.1.3:80, 10.0.0.0/30, 2001:db8::52:0:1, [2001:db8::52:0:2]:443, [2001:db8::52:0:3]:80, 2002:db8:a::45/64";
    const GO_USE_PROXY: &[(&str, bool)] = &[
        ("localhost", false),
        ("127.0.0.1", false),
        ("127.0.0.2", false),
        ("::1", false),
        ("::2", true),
        ("192.168.1.1", false),
        ("192.168.1.2", true),
        ("192.168.1.3", false),
        ("192.168.1.4", true),
        ("10.0.0.2", false),
        ("2001:db8::52:0:1", false),
        ("2001:db8::52:0:2", true),
        ("2001:db8::52:0:3", false),
        ("2002:db8:a::123", false),
        ("fe80::424b:c8be:1643:a1b6", true),
        ("barbaz.net", true),
        ("www.barbaz.net", false),
        ("foobar.com", false),
        ("www.foobar.com", false),
        ("foofoobar.com", true),
        ("baz.com", true),
        ("localhost.net", true),
        ("local.localhost", true),
        ("barbarbaz.net", true),
        ("wildcard.io", true),
        ("nested.wildcard.io", false),
        ("awildcard.io", true),
    ];

    #[test]
    fn go_use_proxy_table() {
        let np = NoProxy::parse(GO_NO_PROXY);
        for (host, want) in GO_USE_PROXY {
            assert_eq!(np.use_proxy(host, "80"), *want, "{host}");
        }
        // TestAllNoProxy: "*" turns the proxy off for every host.
        let all = NoProxy::parse("*");
        for (host, _) in GO_USE_PROXY {
            assert!(!all.use_proxy(host, "80"), "{host}");
        }
        // TestInvalidNoProxy: a malformed entry is ignored, nothing panics.
        assert!(NoProxy::parse(":1").use_proxy("example.com", "80"));
    }

    /// Environment variables of one case.
    type Vars<'a> = &'a [(&'a str, &'a str)];

    fn env(vars: &[(&str, &str)]) -> ProxyEnv {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ProxyEnv::from_lookup(move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    fn proxy_for_url(e: &ProxyEnv, url: &str) -> Result<Option<String>, String> {
        let uri: ureq::http::Uri = url.parse().unwrap();
        let host = uri.host().unwrap();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        e.proxy_for(uri.scheme_str().unwrap(), host, uri.port_u16())
    }

    /// Go's `proxyForURLTests` (httpproxy's proxy_test.go) that have an ASCII request URL;
    /// `None` is Go's `<nil>`.
    #[test]
    fn go_proxy_for_url_table() {
        let cases: &[(Vars, &str, Option<&str>)] = &[
            (
                &[("HTTP_PROXY", "127.0.0.1:8080")],
                "http://example.com",
                Some("http://127.0.0.1:8080"),
            ),
            (
                &[("HTTP_PROXY", "cache.corp.example.com:1234")],
                "http://example.com",
                Some("http://cache.corp.example.com:1234"),
            ),
            (
                &[("HTTP_PROXY", "cache.corp.example.com")],
                "http://example.com",
                Some("http://cache.corp.example.com"),
            ),
            (
                &[("HTTP_PROXY", "localhost")],
                "http://example.com",
                Some("http://localhost"),
            ),
            (
                &[("HTTP_PROXY", "https://cache.corp.example.com")],
                "http://example.com",
                Some("https://cache.corp.example.com"),
            ),
            (
                &[("HTTP_PROXY", "http://127.0.0.1:8080")],
                "http://example.com",
                Some("http://127.0.0.1:8080"),
            ),
            (
                &[("HTTP_PROXY", "https://127.0.0.1:8080")],
                "http://example.com",
                Some("https://127.0.0.1:8080"),
            ),
            (
                &[("HTTP_PROXY", "socks5://127.0.0.1")],
                "http://example.com",
                Some("socks5://127.0.0.1"),
            ),
            (
                &[("HTTP_PROXY", "foo://host")],
                "http://example.com",
                Some("foo://host"),
            ),
            (
                &[
                    ("HTTP_PROXY", "http.proxy.tld"),
                    ("HTTPS_PROXY", "secure.proxy.tld"),
                ],
                "http://insecure.tld/",
                Some("http://http.proxy.tld"),
            ),
            (
                &[
                    ("HTTP_PROXY", "http.proxy.tld"),
                    ("HTTPS_PROXY", "secure.proxy.tld"),
                ],
                "https://secure.tld/",
                Some("http://secure.proxy.tld"),
            ),
            (
                &[
                    ("HTTP_PROXY", "http.proxy.tld"),
                    ("HTTPS_PROXY", "https://secure.proxy.tld"),
                ],
                "https://secure.tld/",
                Some("https://secure.proxy.tld"),
            ),
            (
                &[("HTTP_PROXY", "http.proxy.tld")],
                "https://secure.tld/",
                None,
            ),
            (
                &[("HTTP_PROXY", "http.proxy.tld")],
                "ftp://insecure.tld/",
                None,
            ),
            (
                &[
                    ("HTTPS_PROXY", "https://secure.proxy.tld"),
                    ("REQUEST_METHOD", "PUT"),
                ],
                "https://secure.tld/",
                Some("https://secure.proxy.tld"),
            ),
            (&[], "http://example.com", None),
            (
                &[("NO_PROXY", "example.com"), ("HTTP_PROXY", "proxy")],
                "http://example.com/",
                None,
            ),
            (
                &[("NO_PROXY", ".example.com"), ("HTTP_PROXY", "proxy")],
                "http://example.com/",
                Some("http://proxy"),
            ),
            (
                &[("NO_PROXY", "ample.com"), ("HTTP_PROXY", "proxy")],
                "http://example.com/",
                Some("http://proxy"),
            ),
            (
                &[("NO_PROXY", "example.com"), ("HTTP_PROXY", "proxy")],
                "http://foo.example.com/",
                None,
            ),
            (
                &[("NO_PROXY", ".foo.com"), ("HTTP_PROXY", "proxy")],
                "http://example.com/",
                Some("http://proxy"),
            ),
        ];
        for (vars, url, want) in cases {
            let got = proxy_for_url(&env(vars), url);
            assert_eq!(got, Ok(want.map(str::to_owned)), "{vars:?} {url}");
        }
        // The CGI case: HTTP_PROXY is refused, not used.
        let cgi = env(&[
            ("HTTP_PROXY", "http://10.1.2.3:8080"),
            ("REQUEST_METHOD", "GET"),
        ]);
        assert!(proxy_for_url(&cgi, "http://example.com").is_err());
    }

    /// The environment rules (Go's `FromEnvironment`): which variable applies to an https
    /// server, and which of the upper- and lower-case forms wins.
    #[test]
    fn environment_variables_as_go_reads_them() {
        let p = "http://proxy:3128";
        let cases: &[(Vars, Option<&str>)] = &[
            (&[("HTTPS_PROXY", p)], Some(p)),
            (&[("https_proxy", p)], Some(p)),
            (&[("HTTP_PROXY", p)], None),
            (&[("http_proxy", p)], None),
            (&[("ALL_PROXY", p)], None),
            (&[("all_proxy", p)], None),
            // Upper case first; an empty value is unset.
            (
                &[("HTTPS_PROXY", p), ("https_proxy", "http://lower:1")],
                Some(p),
            ),
            (&[("HTTPS_PROXY", ""), ("https_proxy", p)], Some(p)),
            (
                &[
                    ("HTTPS_PROXY", p),
                    ("NO_PROXY", "other.test"),
                    ("no_proxy", "kube.test"),
                ],
                Some(p),
            ),
            (
                &[
                    ("HTTPS_PROXY", p),
                    ("NO_PROXY", ""),
                    ("no_proxy", "kube.test"),
                ],
                None,
            ),
            (&[("HTTPS_PROXY", p), ("no_proxy", "kube.test")], None),
        ];
        for (vars, want) in cases {
            let got = proxy_for_url(&env(vars), "https://kube.test:6443");
            assert_eq!(got, Ok(want.map(str::to_owned)), "{vars:?}");
        }
    }

    /// `NO_PROXY` entry kinds for an https server on port 6443, and the never-proxied hosts.
    #[test]
    fn no_proxy_entries() {
        let p = "http://proxy:3128";
        let cases: &[(&str, &str, bool)] = &[
            ("kube.test", "https://kube.test:6443", false),
            ("kube.test", "https://api.kube.test:6443", false),
            (".kube.test", "https://kube.test:6443", true),
            (".kube.test", "https://api.kube.test:6443", false),
            ("*.kube.test", "https://api.kube.test:6443", false),
            ("*", "https://kube.test:6443", false),
            ("KUBE.TEST", "https://kube.test:6443", false),
            ("ube.test", "https://kube.test:6443", true),
            ("kube.test:6443", "https://kube.test:6443", false),
            ("kube.test:443", "https://kube.test:6443", true),
            ("kube.test:443", "https://kube.test", false),
            (
                "a.test , kube.test ,b.test",
                "https://kube.test:6443",
                false,
            ),
            ("10.1.2.3", "https://10.1.2.3:6443", false),
            // A domain entry never matches an IP host (Go 1.26 answers PROXY for all three).
            (".0.0.1", "https://10.0.0.1:6443", true),
            ("0.0.1", "https://10.0.0.1:6443", true),
            ("*.0.0.1", "https://10.0.0.1:6443", true),
            ("10.1.2.3:6443", "https://10.1.2.3:6443", false),
            ("10.1.2.3:443", "https://10.1.2.3:6443", true),
            ("10.0.0.0/8", "https://10.1.2.3:6443", false),
            ("10.0.0.0/16", "https://10.1.2.3:6443", true),
            ("fd00::/8", "https://[fd00::1]:6443", false),
            ("[fd00::1]:6443", "https://[fd00::1]:6443", false),
            ("fd00::1", "https://[fd00::1]:6443", false),
            ("", "https://localhost:6443", false),
            ("", "https://127.0.0.1:6443", false),
            ("", "https://127.9.9.9:6443", false),
            ("", "https://[::1]:6443", false),
            ("", "https://0.0.0.0:6443", true),
            ("", "https://LOCALHOST:6443", true),
        ];
        for (no_proxy, url, proxied) in cases {
            let e = env(&[("HTTPS_PROXY", p), ("NO_PROXY", no_proxy)]);
            let got = proxy_for_url(&e, url).unwrap();
            assert_eq!(got.is_some(), *proxied, "NO_PROXY={no_proxy:?} {url}");
        }
    }

    #[test]
    fn split_host_port_as_go() {
        assert_eq!(split_host_port("a:1"), Some(("a", "1")));
        assert_eq!(split_host_port("a:"), Some(("a", "")));
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", "80")));
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("[::1]"), None);
        assert_eq!(split_host_port("a"), None);
        assert_eq!(split_host_port("[a]b:1"), None);
    }
}
