//! certrotate keeps a TLS certificate fresh through the Kubernetes CSR API
//! (`certificates.k8s.io/v1`), the way client-go's certificate manager does it for the kubelet,
//! with plain OS threads and blocking I/O instead of an async runtime.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod clock;
pub mod csr;
mod error;
pub mod kubeconfig;
mod manager;
pub mod metrics;
pub mod pki;
mod rotation;
pub mod schedule;
pub mod store;
pub mod template;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod tls;

pub use clock::{Clock, SystemClock, Timer};
pub use csr::{
    Cancel, CancelReason, CsrClient, CsrError, CsrRef, CsrRequest, KeyUsage, KubeCsrClient,
    KubeCsrClientBuilder,
};
pub use error::Error;
pub use manager::{
    BoxError, CertificateManager, ClientFactory, Config, ConfigBuilder, KeyGenerator, Manager,
    TemplateFn, UsagesFn,
};
pub use pki::{Certificate, KeyAlgorithm, PrivateKey};
pub use store::{MemoryStore, Store, StoreError};
pub use template::CsrTemplate;
