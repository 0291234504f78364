//! The HTTP/TLS plumbing under [`KubeCsrClient`](super::KubeCsrClient): a ureq `Agent` whose
//! TLS layer is our own rustls `ClientConfig`.
//!
//! ureq's stable TLS settings cannot set the name a server certificate is verified against
//! (kubeconfig `tls-server-name`), and ureq panics inside its first request when a client
//! certificate and key do not match. So the TLS step of the connector chain is ours, built on
//! ureq's (semver-exempt, hence the `~3.5` pin) `unversioned::transport` API:
//! proxy CONNECT → TCP → [`RustlsConnector`] with a `ClientConfig` that
//! - uses the crate's explicit crypto provider ([`crate::pki::crypto_provider`]), never a
//!   process default;
//! - trusts only the configured CA, and a server certificate equal to one of its certificates
//!   as it is, as Go's verifier does ([`RootsVerifier`]); behind the dangerous switch nothing is
//!   verified;
//! - has TLS session resumption off, so a resumed session can never carry an old client
//!   identity;
//! - presents a client certificate that was checked against its key before it got here.
//!
//! For an `https://` proxy the same chain first runs for the proxy's own URL, so the TLS to the
//! proxy uses the same `ClientConfig` and `tls-server-name` as the API server, as Go's
//! `net/http` does (it clones `TLSClientConfig` for the proxy), and the API server's TLS then
//! runs inside the tunnel.
//!
//! The TCP connector registers every socket with the agent, so `Agent::shutdown()` interrupts
//! a read blocked on a watch in another thread.

use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use ureq::http::Uri;
use ureq::http::uri::Scheme;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

/// Wraps the chained transport in TLS with a fixed `ClientConfig`.
pub(crate) struct RustlsConnector {
    pub(crate) config: Arc<ClientConfig>,
    /// kubeconfig `tls-server-name`: verify the server certificate against this name instead
    /// of the URL's host.
    pub(crate) server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for RustlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl<In: Transport> Connector<In> for RustlsConnector {
    type Out = Either<In, RustlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => {
                let host = details
                    .uri
                    .authority()
                    .ok_or(ureq::Error::Tls("URL has no host"))?
                    .host();
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                ServerName::try_from(host.to_owned())
                    .map_err(|_| ureq::Error::Tls("URL host is not a valid TLS server name"))?
            }
        };
        let mut conn = ClientConnection::new(self.config.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(RustlsTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        })))
    }
}

/// ureq's resolver, except that a host that is an IP address is used as it is.
///
/// ureq's `DefaultResolver` runs every lookup on a thread of its own whenever a timeout is
/// set (ours always is), even for `https://10.0.0.1:6443`, where `ToSocketAddrs` parses the
/// address and asks no one: a thread spawned and waited for per connection, for nothing. Go's
/// `net.Dialer` does not look an IP literal up either. The answer is the default resolver's
/// (the address, filtered by the agent's IP family); names go to the default resolver.
#[derive(Debug, Default)]
pub(crate) struct LiteralResolver {
    names: ureq::unversioned::resolver::DefaultResolver,
}

impl Resolver for LiteralResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let literal = uri
            .scheme()
            .filter(|s| [Scheme::HTTP, Scheme::HTTPS].contains(s))
            .zip(uri.authority())
            .and_then(|(scheme, authority)| DefaultResolver::host_and_port(scheme, authority))
            .and_then(|addr| addr.parse::<std::net::SocketAddr>().ok());
        let Some(addr) = literal else {
            return self.names.resolve(uri, config, timeout);
        };
        let mut out = self.names.empty();
        for a in config.ip_family().keep_wanted(std::iter::once(addr)) {
            out.push(a);
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

/// A TLS transport (the same shape as ureq's own rustls transport).
pub(crate) struct RustlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for RustlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustlsTransport").finish_non_exhaustive()
    }
}

impl Transport for RustlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// Accepts any server certificate but still checks handshake signatures, for kubeconfig
/// `insecure-skip-tls-verify: true`.
#[derive(Debug)]
pub(crate) struct NoServerVerification {
    pub(crate) provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The server certificate check with the configured certificate authority: WebPKI path
/// building to the configured roots, except that a server certificate byte-for-byte equal to
/// one of the roots is trusted as it is, as Go's `crypto/x509` does (`Verify` takes the chain
/// `[leaf]` when the pool contains the leaf), so a kubeconfig whose
/// `certificate-authority-data` is the server's own (for example self-signed) certificate works
/// as with kubectl. Such a certificate must still be within its validity period, name the
/// server (or `tls-server-name`), allow server authentication when it has an extended key
/// usage, and have no critical extension Go does not handle.
#[derive(Debug)]
pub(crate) struct RootsVerifier {
    pub(crate) webpki: Arc<rustls::client::WebPkiServerVerifier>,
    /// The configured roots, DER.
    pub(crate) roots: Vec<CertificateDer<'static>>,
}

/// The critical extensions Go's `crypto/x509` handles (others make a certificate invalid):
/// key usage, subject alternative name, basic constraints, name constraints, certificate
/// policies, policy mappings, policy constraints, extended key usage, inhibit anyPolicy.
const GO_HANDLED_CRITICAL: &[&str] = &[
    "2.5.29.15",
    "2.5.29.17",
    "2.5.29.19",
    "2.5.29.30",
    "2.5.29.32",
    "2.5.29.33",
    "2.5.29.36",
    "2.5.29.37",
    "2.5.29.54",
];

impl RootsVerifier {
    fn verify_pinned(
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        use rustls::CertificateError as E;
        use x509_parser::prelude::{FromDer, X509Certificate};
        let bad = |e: E| rustls::Error::InvalidCertificate(e);
        let (_, cert) = X509Certificate::from_der(end_entity).map_err(|_| bad(E::BadEncoding))?;
        if cert
            .extensions()
            .iter()
            .any(|x| x.critical && !GO_HANDLED_CRITICAL.contains(&x.oid.to_id_string().as_str()))
        {
            return Err(bad(E::UnhandledCriticalExtension));
        }
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now_secs < cert.validity().not_before.timestamp() {
            return Err(bad(E::NotValidYet));
        }
        if now_secs > cert.validity().not_after.timestamp() {
            return Err(bad(E::Expired));
        }
        match cert.extended_key_usage() {
            Ok(None) => {}
            Ok(Some(eku)) if eku.value.any || eku.value.server_auth => {}
            Ok(Some(_)) => return Err(bad(E::InvalidPurpose)),
            Err(_) => return Err(bad(E::BadEncoding)),
        }
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)
    }
}

impl ServerCertVerifier for RootsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.roots.iter().any(|r| r.as_ref() == end_entity.as_ref()) {
            RootsVerifier::verify_pinned(end_entity, server_name, now)?;
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::config::{Config, IpFamily};
    use ureq::unversioned::transport::time::Duration as Timeout;

    fn resolve(r: &dyn Resolver, uri: &str, family: IpFamily) -> Result<Vec<String>, String> {
        let config = Config::builder().ip_family(family).build();
        let timeout = NextTimeout {
            after: Timeout::from(std::time::Duration::from_secs(5)),
            ..NextTimeout::default()
        };
        let uri: Uri = uri.parse().unwrap();
        r.resolve(&uri, &config, timeout)
            .map(|a| a.iter().map(ToString::to_string).collect())
            .map_err(|e| e.to_string())
    }

    /// The rule: for every URL, the answer (addresses or error) is the default resolver's.
    #[test]
    fn literal_resolver_answers_as_the_default_one() {
        let cases = [
            (
                "https://127.0.0.1:6443/apis",
                IpFamily::Any,
                Ok(vec!["127.0.0.1:6443"]),
            ),
            ("https://10.0.0.1", IpFamily::Any, Ok(vec!["10.0.0.1:443"])),
            ("http://10.0.0.1", IpFamily::Any, Ok(vec!["10.0.0.1:80"])),
            ("https://[::1]:6443", IpFamily::Any, Ok(vec!["[::1]:6443"])),
            (
                "https://[::1]:6443",
                IpFamily::Ipv6Only,
                Ok(vec!["[::1]:6443"]),
            ),
            ("https://[::1]:6443", IpFamily::Ipv4Only, Err(())),
            ("https://127.0.0.1:6443", IpFamily::Ipv6Only, Err(())),
        ];
        for (uri, family, want) in cases {
            let ours = resolve(&LiteralResolver::default(), uri, family);
            let theirs = resolve(&DefaultResolver::default(), uri, family);
            assert_eq!(ours, theirs, "{uri} {family:?}");
            match want {
                Ok(addrs) => assert_eq!(ours.unwrap(), addrs, "{uri} {family:?}"),
                Err(()) => assert!(ours.is_err(), "{uri} {family:?}: {ours:?}"),
            }
        }
        // An IP address needs no time at all: answered even when the connection's time is up
        // (ureq's resolver would run its thread and time out waiting for it).
        let config = Config::builder().build();
        let spent = NextTimeout {
            after: Timeout::from(std::time::Duration::ZERO),
            ..NextTimeout::default()
        };
        let uri: Uri = "https://10.0.0.1:6443".parse().unwrap();
        let addrs = LiteralResolver::default()
            .resolve(&uri, &config, spent)
            .expect("an IP address resolves without a lookup");
        assert_eq!(
            addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["10.0.0.1:6443"]
        );
        // A name is the default resolver's to look up.
        let name = resolve(
            &LiteralResolver::default(),
            "https://localhost:6443",
            IpFamily::Any,
        );
        assert!(name.as_ref().is_ok_and(|a| !a.is_empty()), "{name:?}");
    }
}
