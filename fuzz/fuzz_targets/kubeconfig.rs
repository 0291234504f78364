//! A kubeconfig file: parsed, then each context resolved to a client builder (inline CA and
//! client certificate data parsed and checked). Relative paths resolve inside an empty
//! directory.
#![no_main]

use std::sync::OnceLock;

use certrotate::kubeconfig::Kubeconfig;
use libfuzzer_sys::fuzz_target;

fn base() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
        .path()
}

fuzz_target!(|data: &[u8]| {
    let Ok(config) = Kubeconfig::from_slice(data, base()) else {
        return;
    };
    let _ = config.client_builder(None);
    for name in config.context_names() {
        let _ = config.client_builder(Some(name));
    }
});
