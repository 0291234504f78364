//! The CSR template — the subject and SANs a certificate must carry.
//!
//! Whether a certificate already satisfies a template ([`CsrTemplate::satisfied_by`],
//! [`crate::pki::cert_satisfies_template`]) is decided next to the certificate, in
//! [`crate::pki`], so that this module, which the certificate code builds CSRs from, depends on
//! nothing. The rule is client-go's `certSatisfiesTemplate`: the common name must be equal, and the
//! template's organizations, DNS names and IP addresses must each be a subset of the
//! certificate's. Extra values in the certificate are fine, so a certificate issued with more
//! SANs than asked for (some signers add them) does not cause a rotation loop. Organizational
//! units, emails and URIs go into the CSR but, as in client-go, are not compared.

use std::net::IpAddr;

/// The subject and subject alternative names to request, mirroring the fields of Go's
/// `x509.CertificateRequest` template that client-go uses.
///
/// Build one with [`CsrTemplate::new`] and the `with_*` methods:
///
/// ```
/// use certrotate::CsrTemplate;
/// let t = CsrTemplate::new("system:node:node-1")
///     .with_organization("system:nodes")
///     .with_dns_name("node-1")
///     .with_ip_address("10.0.0.7".parse().unwrap());
/// assert_eq!(t.organizations, ["system:nodes"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsrTemplate {
    /// Subject common name (CN). For Kubernetes client certs this is the user name.
    pub common_name: String,
    /// Subject organizations (O). For Kubernetes client certs these are the groups; all of them
    /// are encoded, in one multi-valued RDN as Go does.
    pub organizations: Vec<String>,
    /// Subject organizational units (OU).
    pub organizational_units: Vec<String>,
    /// DNS name SANs.
    pub dns_names: Vec<String>,
    /// IP address SANs.
    pub ip_addresses: Vec<IpAddr>,
    /// Email address (rfc822Name) SANs.
    pub email_addresses: Vec<String>,
    /// URI SANs.
    pub uris: Vec<String>,
}

impl CsrTemplate {
    /// A template with only a common name.
    pub fn new(common_name: impl Into<String>) -> CsrTemplate {
        CsrTemplate {
            common_name: common_name.into(),
            ..CsrTemplate::default()
        }
    }

    /// Adds an organization (O).
    pub fn with_organization(mut self, o: impl Into<String>) -> CsrTemplate {
        self.organizations.push(o.into());
        self
    }

    /// Adds an organizational unit (OU).
    pub fn with_organizational_unit(mut self, ou: impl Into<String>) -> CsrTemplate {
        self.organizational_units.push(ou.into());
        self
    }

    /// Adds a DNS name SAN.
    pub fn with_dns_name(mut self, name: impl Into<String>) -> CsrTemplate {
        self.dns_names.push(name.into());
        self
    }

    /// Adds an IP address SAN.
    pub fn with_ip_address(mut self, ip: IpAddr) -> CsrTemplate {
        self.ip_addresses.push(ip);
        self
    }

    /// Adds an email address SAN.
    pub fn with_email_address(mut self, email: impl Into<String>) -> CsrTemplate {
        self.email_addresses.push(email.into());
        self
    }

    /// Adds a URI SAN.
    pub fn with_uri(mut self, uri: impl Into<String>) -> CsrTemplate {
        self.uris.push(uri.into());
        self
    }
}
