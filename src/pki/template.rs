//! Whether a certificate satisfies a [`CsrTemplate`] (client-go `certSatisfiesTemplate`).

use super::Certificate;
use crate::template::CsrTemplate;

impl CsrTemplate {
    /// Whether `cert` already satisfies this template (client-go `certSatisfiesTemplate`): the
    /// common names are equal and the template's organizations, DNS names and IP addresses are
    /// each contained in the certificate's. IPs compare by value, with IPv4-mapped IPv6
    /// addresses taken as IPv4 (Go compares their text, which prints them the same way).
    pub fn satisfied_by(&self, cert: &Certificate) -> bool {
        if cert.common_name() != self.common_name {
            return false;
        }
        let subset = |want: &[String], have: &[String]| want.iter().all(|w| have.contains(w));
        if !subset(&self.organizations, cert.organizations()) {
            return false;
        }
        if !subset(&self.dns_names, cert.dns_names()) {
            return false;
        }
        self.ip_addresses.iter().all(|want| {
            let want = want.to_canonical();
            cert.ip_addresses()
                .iter()
                .any(|have| have.to_canonical() == want)
        })
    }
}

/// [`CsrTemplate::satisfied_by`] with client-go's handling of absent values: no certificate
/// never satisfies, and no template is satisfied by any certificate.
pub fn cert_satisfies_template(cert: Option<&Certificate>, template: Option<&CsrTemplate>) -> bool {
    match (cert, template) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(c), Some(t)) => t.satisfied_by(c),
    }
}
