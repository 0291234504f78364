//! [`FileStore`]: the kubelet's on-disk certificate layout, written crash-safely.
//!
//! Owns the file layout and the write protocol; parsing and key checks are left to
//! [`crate::pki`]. Everything is documented on [`FileStore`], the public face of this module.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustls::pki_types::pem::{PemObject, SectionKind};

use super::{Store, StoreError};
use crate::clock::{Clock, SystemClock};
use crate::pki::{self, Certificate, PkiError, pem_encode};
use crate::report::Chain;

/// How many timestamped pairs a [`FileStore`] keeps by default, besides the current one.
pub const DEFAULT_RETENTION: usize = 5;

/// Mode of pair, backup and temporary files, whatever the umask.
const PAIR_MODE: u32 = 0o600;
/// Mode of directories the store creates (before the umask), as the kubelet's `MkdirAll(dir, 0755)`.
const DIR_MODE: u32 = 0o755;
/// Length of the random part of temporary file names (ASCII letters and digits).
const TEMP_RAND_LEN: usize = 6;
const TEMP_SUFFIX: &str = ".pem.tmp";
/// Length of `YYYY-MM-DD-HH-MM-SS`.
const STAMP_LEN: usize = 19;

/// A [`Store`] in the kubelet's on-disk layout: `<prefix>-current.pem` links to the newest
/// `<prefix>-<UTC timestamp>.pem`, which holds the chain and the key. Mirrors client-go's
/// `certificate.NewFileStore(prefix, certDir, keyDir, certFile, keyFile)`, with a crash-safe
/// update, repair of broken layouts people really have, and pruning of old pairs.
///
/// Build one with [`FileStore::builder`]:
///
/// ```no_run
/// use certrotate::{FileStore, Store};
///
/// let pki = "/var/lib/kubelet/pki";
/// let store = FileStore::builder("kubelet-client", pki, pki).build()?;
/// match store.current()? {
///     Some(cert) => println!("stored certificate {}", cert.serial_hex()),
///     None => println!("no certificate yet: bootstrap"),
/// }
/// # Ok::<(), certrotate::StoreError>(())
/// ```
///
/// # Layout (compatible with client-go's `certificate.NewFileStore`)
///
/// For a pair name prefix such as `kubelet-client` and a certificate directory `D`:
///
/// | path | what it is |
/// |---|---|
/// | `D/kubelet-client-current.pem` | symlink (absolute target) to the pair in use |
/// | `D/kubelet-client-2026-11-30-07-36-00.pem` | one stored pair: the `CERTIFICATE` blocks, leaf first, then the key block; 0600 |
/// | `D/kubelet-client-2026-11-30-07-36-00.1.pem` | a second pair stored in the same second (certrotate only: client-go would truncate and rewrite the first) |
/// | `D/kubelet-client-updated.pem` | the new link while it is being swapped in; exists only during an update or after a crash in one |
/// | `D/kubelet-client-backup-<timestamp>.pem` | a regular-file `current` that was moved aside (certrotate only) |
/// | `D/.kubelet-client-XXXXXX.pem.tmp` | a pair being written; leftovers of a crash are removed by the next update |
/// | `D/kubelet-client-pending.key` | the private key of a CSR sent and not yet answered ([`Store::pending_key`]), so that a restarted manager meets its own CSR instead of making another; 0600, removed once the CSR is answered (certrotate only) |
///
/// Timestamps are UTC, from the store's [`Clock`]. Because the link target is absolute, the
/// link resolves from any working directory, also when the store was given a relative one.
///
/// # Lookup
///
/// [`current`](Store::current) tries, in order, as client-go does: `D/<prefix>-current.pem`;
/// the explicit cert and key files ([`FileStoreBuilder::cert_and_key_files`]);
/// `D/<prefix>.crt` with `<key dir>/<prefix>.key`. A candidate whose files do not exist is
/// skipped (a dangling `current` link counts as not existing, as client-go's `os.Stat` check);
/// when none exists the answer is `Ok(None)`. A candidate that exists but is empty, unparsable,
/// or whose key does not match its leaf is [`StoreError::Corrupt`], never `Ok(None)`: a broken
/// pair is not silently skipped in favour of an older one. Expiry is not looked at.
///
/// # The update protocol
///
/// [`update`](Store::update) never leaves a moment without a loadable `current`, and a crash at
/// any instant leaves `current` on the old pair or on the new one:
///
/// 1. Build the file's bytes (the chain's `CERTIFICATE` blocks, then the first key block of the
///    key PEM, re-encoded under its own label) and parse *those bytes* back: chain, key, key ↔
///    leaf match. Bad input is [`StoreError::InvalidPair`] and nothing on disk is touched, not
///    even the directory. (client-go creates the file first and validates after writing.)
/// 2. Create the certificate directory (0755, as the kubelet) if it is missing.
/// 3. Write a temporary file in that directory, set it to exactly 0600 (the umask can only
///    remove bits from a creation mode, so the mode is set explicitly), `fsync` it, and rename
///    it to the timestamped name *without replacing* anything there (`RENAME_NOREPLACE`): an
///    existing pair, in particular the one `current` points to, is never truncated or
///    overwritten. A name that is taken gets the next `.N` suffix. `fsync` the directory.
/// 4. If `current` is a regular file (an operator copied it there), copy it to
///    `<prefix>-backup-<timestamp>.pem` (0600, `fsync`ed) and log a warning; the swap below then
///    replaces it. client-go refuses to rotate at all in that state.
/// 5. Swap the link: remove a stale `-updated.pem` link, create `-updated.pem` → the absolute
///    path of the new file, and `rename` it over `-current.pem`. `rename` replaces the old link
///    in one step (client-go removes `current` first, leaving a window without one). `fsync` the
///    directory; only then does `update` return `Ok`.
/// 6. Prune (see below). Pruning failures are logged, not returned: the pair is stored.
///
/// On construction, a `-updated.pem` symlink with no resolvable `current` (a crash inside
/// client-go's non-atomic swap) is promoted to `current`, as client-go does. A `-updated.pem`
/// that is *not* a symlink is refused with [`StoreError::BadState`] naming it: neither store
/// writes such a file, so a person must look.
///
/// # Retention
///
/// After each update the store keeps the newest N pairs by the timestamp in their names
/// (default [`DEFAULT_RETENTION`]) plus whatever `current` points to, and deletes older files
/// whose names match exactly `<prefix>-YYYY-MM-DD-HH-MM-SS.pem` or
/// `<prefix>-YYYY-MM-DD-HH-MM-SS.N.pem`, and leftover temporary files of this prefix. Nothing
/// else in the directory is touched: not other prefixes, not backups, not `<prefix>.crt`.
/// N = 0 keeps every pair, as client-go (which never prunes) does.
///
/// # Concurrency
///
/// `current` takes no lock: every change it can observe is one atomic `rename`. Updates through
/// one `FileStore` are serialised by a mutex. One writer per directory and prefix: two stores
/// (or processes) updating the same prefix each stay atomic, but one may prune the other's
/// temporary file and fail that update.
///
/// # Logging
///
/// Paths, serial numbers and repairs are logged (repairs at `warn`); certificate and key bytes
/// never are.
///
/// # Platform behavior
///
/// Unix only (symlinks, modes, directory `fsync`). `fsync` of a directory is how a rename is
/// made durable on Linux file systems.
#[derive(Debug)]
pub struct FileStore {
    prefix: String,
    /// Invariant: absolute.
    cert_dir: PathBuf,
    /// Invariant: absolute.
    key_dir: PathBuf,
    /// Explicit cert and key files, both absolute; tried after `current`.
    explicit: Option<(PathBuf, PathBuf)>,
    retention: usize,
    clock: Arc<dyn Clock>,
    /// Serialises `update`; held across its I/O. `current` never takes it.
    write_lock: Mutex<()>,
}

/// Builder of a [`FileStore`]; from [`FileStore::builder`].
#[derive(Debug)]
pub struct FileStoreBuilder {
    prefix: String,
    cert_dir: PathBuf,
    key_dir: PathBuf,
    explicit: Option<(PathBuf, PathBuf)>,
    retention: usize,
    clock: Arc<dyn Clock>,
}

impl FileStore {
    /// Starts a store for pairs named `<prefix>-…` (for example `kubelet-client` or
    /// `kubelet-server`), stored in `cert_dir`; `key_dir` is only where the legacy
    /// `<prefix>.key` is looked for (the kubelet passes the same directory for both).
    /// Relative directories are made absolute against the working directory at
    /// [`build`](FileStoreBuilder::build) time.
    pub fn builder(
        prefix: impl Into<String>,
        cert_dir: impl Into<PathBuf>,
        key_dir: impl Into<PathBuf>,
    ) -> FileStoreBuilder {
        FileStoreBuilder {
            prefix: prefix.into(),
            cert_dir: cert_dir.into(),
            key_dir: key_dir.into(),
            explicit: None,
            retention: DEFAULT_RETENTION,
            clock: Arc::new(SystemClock),
        }
    }

    /// The path of `<prefix>-current.pem` (client-go `FileStore.CurrentPath`): absolute, and a
    /// symlink to the pair in use once the store has been updated.
    pub fn current_path(&self) -> PathBuf {
        self.link_path("current")
    }

    /// `<cert dir>/<prefix>-pending.key`: see [`Store::pending_key`].
    pub fn pending_key_path(&self) -> PathBuf {
        self.cert_dir.join(format!("{}-pending.key", self.prefix))
    }

    fn link_path(&self, kind: &str) -> PathBuf {
        self.cert_dir.join(format!("{}-{kind}.pem", self.prefix))
    }

    /// Promotes a `-updated.pem` link left by a crash when `current` does not resolve, and
    /// refuses a `-updated.pem` that is not a link (client-go `fileStore.recover`).
    fn recover(&self) -> Result<(), StoreError> {
        let updated = self.link_path("updated");
        match fs::symlink_metadata(&updated) {
            Ok(meta) if meta.file_type().is_symlink() => {}
            Ok(_) => return Err(not_a_symlink(updated)),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("inspect", &updated, e)),
        }
        let current = self.current_path();
        match fs::metadata(&current) {
            // A complete swap or an older pair is in place; the next update replaces the link.
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::rename(&updated, &current).map_err(|e| io_err("rename", &updated, e))?;
                sync_dir(&self.cert_dir)?;
                log::warn!(
                    "promoted {} to {} (an interrupted update left it behind)",
                    updated.display(),
                    current.display()
                );
                Ok(())
            }
            Err(e) => Err(io_err("inspect", &current, e)),
        }
    }

    fn create_cert_dir(&self) -> Result<(), StoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&self.cert_dir)
            .map_err(|e| io_err("create directory", &self.cert_dir, e))
    }

    /// A temporary file in the cert dir holding `contents`, exactly 0600, `fsync`ed.
    fn write_temp(&self, contents: &[u8]) -> Result<tempfile::NamedTempFile, StoreError> {
        let dir = &self.cert_dir;
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{}-", self.prefix))
            .suffix(TEMP_SUFFIX)
            .rand_bytes(TEMP_RAND_LEN)
            .permissions(Permissions::from_mode(PAIR_MODE))
            .tempfile_in(dir)
            .map_err(|e| io_err("create a temporary file in", dir, e))?;
        // The umask can only have removed bits; make it exactly 0600.
        tmp.as_file()
            .set_permissions(Permissions::from_mode(PAIR_MODE))
            .map_err(|e| io_err("set permissions of", tmp.path(), e))?;
        tmp.write_all(contents)
            .map_err(|e| io_err("write", tmp.path(), e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| io_err("fsync", tmp.path(), e))?;
        Ok(tmp)
    }

    /// Writes `contents` to a new file in the cert dir: temporary file, exactly 0600, `fsync`,
    /// rename to `name(n)` for the first `n >= first_n` whose name is free (never replacing a
    /// file), `fsync` the directory. Returns the new file's path.
    fn write_new_file(
        &self,
        contents: &[u8],
        first_n: u32,
        name: impl Fn(u32) -> String,
    ) -> Result<PathBuf, StoreError> {
        let dir = &self.cert_dir;
        let mut tmp = self.write_temp(contents)?;
        let mut n = first_n;
        loop {
            let path = dir.join(name(n));
            match tmp.persist_noclobber(&path) {
                Ok(_) => break sync_dir(dir).map(|()| path),
                Err(e) if e.error.kind() == ErrorKind::AlreadyExists && n < u32::MAX => {
                    tmp = e.file;
                    n += 1;
                }
                Err(e) => return Err(io_err("rename a temporary file to", &path, e.error)),
            }
        }
    }

    /// The first `.N` suffix to try for a pair stamped `stamp`: one past the highest in use, so
    /// names of one second sort in write order even after older ones were pruned.
    fn next_suffix(&self, stamp: &str) -> Result<u32, StoreError> {
        let mut next = 0;
        for entry in read_dir(&self.cert_dir)? {
            if let Some((s, n)) = entry
                .to_str()
                .and_then(|name| parse_pair_name(&self.prefix, name))
                && s == stamp
            {
                next = next.max(n.saturating_add(1));
            }
        }
        Ok(next)
    }

    /// If `current` is a regular file, saves a 0600 copy as `<prefix>-backup-<stamp>.pem` and
    /// returns true: the caller may then replace it.
    fn back_up_regular_current(&self, stamp: &str) -> Result<bool, StoreError> {
        let current = self.current_path();
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_file() => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("inspect", &current, e)),
        }
        let bytes = fs::read(&current).map_err(|e| io_err("read", &current, e))?;
        let backup = self.write_new_file(&bytes, 0, |n| {
            format!("{}-backup-{}", self.prefix, numbered(stamp, n))
        })?;
        log::warn!(
            "{} is a regular file, not a symlink (was it copied?); saved it as {} and replacing it with a symlink",
            current.display(),
            backup.display()
        );
        Ok(true)
    }

    /// Points `current` at `target` atomically (client-go `fileStore.updateSymlink`, without its
    /// window with no `current`): removes a stale `-updated.pem` link, links `-updated.pem` to
    /// the absolute `target`, renames it over `current`, and `fsync`s the directory.
    ///
    /// Fails, changing nothing, when `target` does not exist, when `-updated.pem` is not a
    /// symlink, and when `current` is a regular file unless `replace_regular` (the caller has
    /// backed it up).
    fn swap_current(&self, target: &Path, replace_regular: bool) -> Result<(), StoreError> {
        let current = self.current_path();
        match fs::symlink_metadata(&current) {
            Ok(meta) if !meta.file_type().is_symlink() && !replace_regular => {
                return Err(not_a_symlink(current));
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspect", &current, e)),
        }
        let updated = self.link_path("updated");
        match fs::symlink_metadata(&updated) {
            Ok(meta) if meta.file_type().is_symlink() => {
                fs::remove_file(&updated).map_err(|e| io_err("remove", &updated, e))?;
            }
            Ok(_) => return Err(not_a_symlink(updated)),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspect", &updated, e)),
        }
        match fs::metadata(target) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StoreError::BadState {
                    path: target.to_path_buf(),
                    reason: "the file does not exist, so it cannot become the current pair".into(),
                });
            }
            Err(e) => return Err(io_err("inspect", target, e)),
        }
        let target = std::path::absolute(target).map_err(|e| io_err("resolve", target, e))?;
        symlink(&target, &updated).map_err(|e| io_err("create symlink", &updated, e))?;
        if let Err(e) = fs::rename(&updated, &current) {
            let _ = fs::remove_file(&updated);
            return Err(io_err("rename a symlink to", &current, e));
        }
        sync_dir(&self.cert_dir)
    }

    /// Deletes pairs beyond the newest `retention` (never the one `current` points to) and
    /// leftover temporary files. Only names matching this prefix's exact patterns are touched.
    fn prune(&self) -> Result<(), StoreError> {
        let current = self.current_path();
        let live: Option<OsString> = match fs::read_link(&current) {
            Ok(target) => target.file_name().map(OsString::from),
            // Not a link (or gone): nothing is live among the timestamped files.
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput) => None,
            Err(e) => return Err(io_err("read symlink", &current, e)),
        };
        let mut pairs = Vec::new();
        for name in read_dir(&self.cert_dir)? {
            let Some(text) = name.to_str() else { continue };
            if let Some((stamp, n)) = parse_pair_name(&self.prefix, text) {
                pairs.push(((stamp.to_owned(), n), name));
            } else if is_temp_name(&self.prefix, text) {
                self.remove_if_file(&name, "leftover temporary file");
            }
        }
        if self.retention == 0 {
            return Ok(());
        }
        pairs.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        for (_, name) in pairs.into_iter().skip(self.retention) {
            if live.as_ref() != Some(&name) {
                self.remove_if_file(&name, "old pair file");
            }
        }
        Ok(())
    }

    fn remove_if_file(&self, name: &OsString, what: &str) {
        let path = self.cert_dir.join(name);
        let is_file = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
        if !is_file {
            return;
        }
        match fs::remove_file(&path) {
            Ok(()) => log::debug!("removed {what} {}", path.display()),
            Err(e) => log::warn!("cannot remove {what} {}: {e}", path.display()),
        }
    }

    /// Loads a cert file and a key file when both exist (client-go `loadX509KeyPair`).
    fn load_cert_key(&self, cert: &Path, key: &Path) -> Result<Option<Certificate>, StoreError> {
        if !exists(cert)? || !exists(key)? {
            return Ok(None);
        }
        let cert_pem = fs::read(cert).map_err(|e| io_err("read", cert, e))?;
        let key_pem = fs::read(key).map_err(|e| io_err("read", key, e))?;
        let corrupt = |reason: String| StoreError::Corrupt {
            path: cert.to_path_buf(),
            reason: format!("{reason} (key file {})", key.display()),
        };
        if is_blank(&cert_pem) || is_blank(&key_pem) {
            return Err(corrupt("the certificate or key file is empty".into()));
        }
        let loaded =
            Certificate::from_pem(&cert_pem, &key_pem).map_err(|e| corrupt(e.to_string()))?;
        log::debug!(
            "loaded certificate {} from {} and {}",
            loaded.serial_hex(),
            cert.display(),
            key.display()
        );
        Ok(Some(loaded))
    }
}

impl FileStoreBuilder {
    /// Explicit cert and key files (the kubelet's `--tls-cert-file` / `--tls-private-key-file`),
    /// tried after `<prefix>-current.pem` and before `<prefix>.crt`/`.key`. They are only read,
    /// never written. An empty path for either means "none", as client-go's `""`.
    /// Defaults to none.
    pub fn cert_and_key_files(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> FileStoreBuilder {
        let (cert, key) = (cert_file.into(), key_file.into());
        self.explicit =
            (!cert.as_os_str().is_empty() && !key.as_os_str().is_empty()).then_some((cert, key));
        self
    }

    /// How many timestamped pairs to keep besides the one `current` points to; older ones are
    /// deleted after each update. 0 keeps all (client-go's behaviour). Defaults to
    /// [`DEFAULT_RETENTION`] (5).
    pub fn retention(mut self, pairs: usize) -> FileStoreBuilder {
        self.retention = pairs;
        self
    }

    /// The clock whose wall time names new files (UTC). Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> FileStoreBuilder {
        self.clock = clock;
        self
    }

    /// Makes the paths absolute and recovers from an interrupted swap: a `-updated.pem` link
    /// with no resolvable `current` is promoted to `current`. Creates no directory.
    ///
    /// # Errors
    /// - [`StoreError::InvalidConfig`]: the prefix is empty, contains `/`, or starts with `.`.
    /// - [`StoreError::BadState`]: `<prefix>-updated.pem` exists and is not a symlink.
    /// - [`StoreError::Io`]: the working directory cannot be read (relative paths), or
    ///   inspecting or promoting the links fails.
    pub fn build(self) -> Result<FileStore, StoreError> {
        if self.prefix.is_empty() || self.prefix.contains('/') || self.prefix.starts_with('.') {
            return Err(StoreError::InvalidConfig(format!(
                "pair name prefix {:?} must be non-empty, without '/' and not start with '.'",
                self.prefix
            )));
        }
        let absolute = |p: PathBuf| std::path::absolute(&p).map_err(|e| io_err("resolve", &p, e));
        let explicit = match self.explicit {
            Some((cert, key)) => Some((absolute(cert)?, absolute(key)?)),
            None => None,
        };
        let store = FileStore {
            prefix: self.prefix,
            cert_dir: absolute(self.cert_dir)?,
            key_dir: absolute(self.key_dir)?,
            explicit,
            retention: self.retention,
            clock: self.clock,
            write_lock: Mutex::new(()),
        };
        store.recover()?;
        Ok(store)
    }
}

impl Store for FileStore {
    /// Loads the pair in use; see "Lookup" on [`FileStore`].
    /// Reads files on every call; it does not cache.
    fn current(&self) -> Result<Option<Certificate>, StoreError> {
        let current = self.current_path();
        match fs::symlink_metadata(&current) {
            Ok(meta) => {
                let is_link = meta.file_type().is_symlink();
                match fs::read(&current) {
                    Ok(bytes) => {
                        let source = if is_link {
                            link_target(&current)
                        } else {
                            log::warn!(
                                "{} is a regular file, not a symlink; loading it, and the next update will back it up and replace it",
                                current.display()
                            );
                            current.clone()
                        };
                        return load_pair(&source, &bytes).map(Some);
                    }
                    Err(e) if is_link && e.kind() == ErrorKind::NotFound => {
                        log::warn!(
                            "{} points to {}, which does not exist",
                            current.display(),
                            link_target(&current).display()
                        );
                    }
                    Err(e) => return Err(io_err("read", &current, e)),
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspect", &current, e)),
        }
        if let Some((cert, key)) = &self.explicit
            && let Some(found) = self.load_cert_key(cert, key)?
        {
            return Ok(Some(found));
        }
        let cert = self.cert_dir.join(format!("{}.crt", self.prefix));
        let key = self.key_dir.join(format!("{}.key", self.prefix));
        if let Some(found) = self.load_cert_key(&cert, &key)? {
            return Ok(Some(found));
        }
        log::debug!(
            "no cert/key files read at {}, {} or ({}, {})",
            current.display(),
            match &self.explicit {
                Some((c, k)) => format!("({}, {})", c.display(), k.display()),
                None => "(no explicit files)".into(),
            },
            cert.display(),
            key.display()
        );
        Ok(None)
    }

    /// Creates the certificate directory if it is missing (0755, as an update would), then
    /// creates and removes a temporary file in it (named as an update's, so a crash leaves
    /// nothing the next update does not remove). Nothing else changes.
    fn check_writable(&self) -> Result<(), StoreError> {
        let _guard = self.write_lock.lock();
        self.create_cert_dir()?;
        let probe = tempfile::Builder::new()
            .prefix(&format!(".{}-", self.prefix))
            .suffix(TEMP_SUFFIX)
            .rand_bytes(TEMP_RAND_LEN)
            .permissions(Permissions::from_mode(PAIR_MODE))
            .tempfile_in(&self.cert_dir)
            .map_err(|e| io_err("create a file in", &self.cert_dir, e))?;
        probe
            .close()
            .map_err(|e| io_err("remove a temporary file in", &self.cert_dir, e))
    }

    /// Reads `<cert dir>/<prefix>-pending.key`.
    fn pending_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.pending_key_path();
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path, e)),
        }
    }

    /// Writes `<cert dir>/<prefix>-pending.key` as a pair is written (temporary file, exactly
    /// 0600, `fsync`, rename over the old one, `fsync` of the directory), or removes it.
    fn set_pending_key(&self, key_pem: Option<&[u8]>) -> Result<(), StoreError> {
        let _guard = self.write_lock.lock();
        let path = self.pending_key_path();
        let Some(pem) = key_pem else {
            return match fs::remove_file(&path) {
                Ok(()) => sync_dir(&self.cert_dir),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err("remove", &path, e)),
            };
        };
        self.create_cert_dir()?;
        self.write_temp(pem)?
            .persist(&path)
            .map_err(|e| io_err("rename a temporary file to", &path, e.error))?;
        sync_dir(&self.cert_dir)
    }

    /// Stores the pair as `<prefix>-<UTC timestamp>.pem` and points `<prefix>-current.pem` at
    /// it, by the protocol in "The update protocol" on
    /// [`FileStore`]; returns the pair as
    /// parsed from the exact bytes written.
    fn update(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Certificate, StoreError> {
        let invalid = StoreError::InvalidPair;
        let contents = pair_file_contents(cert_pem, key_pem).map_err(invalid)?;
        let cert = Certificate::from_pair_pem(&contents).map_err(invalid)?;

        let _guard = self.write_lock.lock();
        self.create_cert_dir()?;
        let stamp = timestamp(self.clock.now());
        let first = self.next_suffix(&stamp)?;
        let path = self.write_new_file(&contents, first, |n| {
            format!("{}-{}", self.prefix, numbered(&stamp, n))
        })?;
        let replace_regular = self.back_up_regular_current(&stamp)?;
        self.swap_current(&path, replace_regular)?;
        log::info!(
            "stored certificate {} (CN {:?}) in {}",
            cert.serial_hex(),
            cert.common_name(),
            path.display()
        );
        if let Err(e) = self.prune() {
            log::warn!("cannot prune old certificate files: {}", Chain(&e));
        }
        Ok(cert)
    }
}

/// The bytes of a pair file: the chain's `CERTIFICATE` blocks in order, then the first private
/// key block of `key_pem` under its own label (client-go writes the same two parts).
fn pair_file_contents(cert_pem: &[u8], key_pem: &[u8]) -> Result<Vec<u8>, PkiError> {
    let mut out = String::new();
    for cert in pki::parse_chain_pem(cert_pem)? {
        out.push_str(&pem_encode("CERTIFICATE", &cert));
    }
    for item in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(key_pem) {
        let (kind, der) =
            item.map_err(|e| PkiError::InvalidKey(format!("cannot read PEM: {e}")))?;
        let label = match kind {
            SectionKind::PrivateKey => "PRIVATE KEY",
            SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
            SectionKind::EcPrivateKey => "EC PRIVATE KEY",
            _ => continue,
        };
        out.push_str(&pem_encode(label, &der));
        return Ok(out.into_bytes());
    }
    Err(PkiError::InvalidKey(
        "no private key PEM block found".into(),
    ))
}

/// Parses a combined pair file; any failure is [`StoreError::Corrupt`] naming `path`.
fn load_pair(path: &Path, bytes: &[u8]) -> Result<Certificate, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if is_blank(bytes) {
        return Err(corrupt("the file is empty".into()));
    }
    let cert = Certificate::from_pair_pem(bytes).map_err(|e| corrupt(e.to_string()))?;
    log::debug!(
        "loaded certificate {} from {}",
        cert.serial_hex(),
        path.display()
    );
    Ok(cert)
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// Where a symlink points, made absolute against its own directory; the link itself when it
/// cannot be read.
fn link_target(link: &Path) -> PathBuf {
    match fs::read_link(link) {
        Ok(target) => match link.parent() {
            Some(dir) => dir.join(target),
            None => target,
        },
        Err(_) => link.to_path_buf(),
    }
}

fn exists(path: &Path) -> Result<bool, StoreError> {
    match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("inspect", path, e)),
    }
}

fn read_dir(dir: &Path) -> Result<Vec<OsString>, StoreError> {
    let read = |e| io_err("list directory", dir, e);
    fs::read_dir(dir)
        .map_err(read)?
        .map(|entry| entry.map(|e| e.file_name()).map_err(read))
        .collect()
}

/// `fsync` of a directory: makes renames, links and unlinks in it durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync directory", dir, e))
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn not_a_symlink(path: PathBuf) -> StoreError {
    StoreError::BadState {
        path,
        reason: "expected it to be a symlink but it is a file; move it away (no certificate store writes one)"
            .into(),
    }
}

/// `YYYY-MM-DD-HH-MM-SS` in UTC, as the kubelet names pair files.
fn timestamp(t: SystemTime) -> String {
    // fmt_time gives `YYYY-MM-DD'T'HH:MM:SS'Z'`.
    pki::fmt_time(t)
        .trim_end_matches('Z')
        .replace(['T', ':'], "-")
}

/// `<stamp>.pem` for n = 0 (the kubelet's name), `<stamp>.<n>.pem` after.
fn numbered(stamp: &str, n: u32) -> String {
    if n == 0 {
        format!("{stamp}.pem")
    } else {
        format!("{stamp}.{n}.pem")
    }
}

/// `(stamp, n)` when `name` is exactly `<prefix>-YYYY-MM-DD-HH-MM-SS.pem` (n = 0) or
/// `<prefix>-YYYY-MM-DD-HH-MM-SS.<n>.pem` with n ≥ 1 in canonical decimal.
fn parse_pair_name<'a>(prefix: &str, name: &'a str) -> Option<(&'a str, u32)> {
    let rest = name
        .strip_prefix(prefix)?
        .strip_prefix('-')?
        .strip_suffix(".pem")?;
    let (stamp, tail) = rest.split_at_checked(STAMP_LEN)?;
    let shape_ok = stamp.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 | 10 | 13 | 16 => b == b'-',
        _ => b.is_ascii_digit(),
    });
    if !shape_ok {
        return None;
    }
    if tail.is_empty() {
        return Some((stamp, 0));
    }
    let digits = tail.strip_prefix('.')?;
    let n: u32 = digits.parse().ok()?;
    (n >= 1 && n.to_string() == digits).then_some((stamp, n))
}

/// Whether `name` is a temporary file of this prefix: `.<prefix>-XXXXXX.pem.tmp`.
fn is_temp_name(prefix: &str, name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_prefix(prefix))
        .and_then(|n| n.strip_prefix('-'))
        .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
        .is_some_and(|r| r.len() == TEMP_RAND_LEN && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The parsers of the store's files, for the fuzz targets (feature `fuzzing`): `bytes` as a
/// combined pair file ([`load_pair`]), and cut at its first NUL into a certificate file and a
/// key file as [`FileStore`] checks and parses them ([`FileStore::load_cert_key`] after the
/// reads), and as an update's certificate and key ([`pair_file_contents`]).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_parse(bytes: &[u8]) {
    let _ = load_pair(Path::new("fuzz-current.pem"), bytes);
    let (cert_pem, key_pem) = match bytes.iter().position(|b| *b == 0) {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, bytes),
    };
    if !is_blank(cert_pem) && !is_blank(key_pem) {
        let _ = Certificate::from_pem(cert_pem, key_pem);
    }
    if let Ok(pair) = pair_file_contents(cert_pem, key_pem) {
        let _ = load_pair(Path::new("fuzz-updated.pem"), &pair);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn store_in(dir: &Path) -> FileStore {
        FileStore::builder("kubelet", dir, dir).build().unwrap()
    }

    fn is_symlink(p: &Path) -> bool {
        fs::symlink_metadata(p).unwrap().file_type().is_symlink()
    }

    /// Two writers in one second: the name a writer chose may be taken by the time it renames
    /// its file; it takes the next free number and never replaces the other's file. Any other
    /// failure of the rename ends the write at once.
    #[test]
    fn a_new_file_never_replaces_one_that_took_its_name() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = store_in(dir.path());
        fs::write(dir.path().join("x-0"), b"first").unwrap();
        fs::write(dir.path().join("x-1"), b"second").unwrap();
        let path = s.write_new_file(b"third", 0, |n| format!("x-{n}")).unwrap();
        assert_eq!(path, dir.path().join("x-2"));
        assert_eq!(fs::read(dir.path().join("x-0")).unwrap(), b"first");
        assert_eq!(fs::read(dir.path().join("x-1")).unwrap(), b"second");
        assert_eq!(fs::read(&path).unwrap(), b"third");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // `x-0` is a file, so `x-0/…` cannot be made: an error, not a search for a free name.
        let err = s
            .write_new_file(b"fourth", 0, |n| format!("x-0/pair-{n}"))
            .unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err}");
        // Every number taken up to the last: an error, not a wrap to 0 or an overflow.
        fs::write(dir.path().join(format!("x-{}", u32::MAX)), b"last").unwrap();
        let err = s
            .write_new_file(b"fifth", u32::MAX, |n| format!("x-{n}"))
            .unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 4, "no file left behind: {names:?}");
    }

    // certificate_store_test.go TestUpdateSymlinkExistingFileError: the swap refuses a regular
    // `current` (update() backs it up first and then allows the replacement).
    #[test]
    fn update_symlink_existing_file_error() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("kubelet-current.pem");
        fs::write(&current, b"operator copy").unwrap();
        let s = store_in(dir.path());
        let err = s.swap_current(&current, false).unwrap_err();
        assert!(
            matches!(&err, StoreError::BadState { path, .. } if *path == current),
            "{err}"
        );
        assert!(!is_symlink(&current));
        assert_eq!(fs::read(&current).unwrap(), b"operator copy");
        assert!(!dir.path().join("kubelet-updated.pem").exists());
    }

    // TestUpdateSymlinkNewFileNotExist: linking to an existing file works and keeps it; linking
    // to a missing file fails and leaves `current` alone.
    #[test]
    fn update_symlink_new_file_not_exist() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("kubelet-oldpair.pem");
        fs::write(&old, b"").unwrap();
        let s = store_in(dir.path());
        s.swap_current(&old, false).unwrap();
        assert!(old.exists());
        let current = s.current_path();
        assert!(is_symlink(&current));
        let new = dir.path().join("kubelet-newpair.pem");
        let err = s.swap_current(&new, false).unwrap_err();
        assert!(
            matches!(&err, StoreError::BadState { path, .. } if *path == new),
            "{err}"
        );
        assert_eq!(fs::read_link(&current).unwrap(), old);
        assert!(!dir.path().join("kubelet-updated.pem").exists());
    }

    /// A target that cannot be looked at (a symlink loop) is an I/O error naming it, not "does
    /// not exist", and `current` is left as it was.
    #[test]
    fn update_symlink_to_a_target_that_cannot_be_inspected() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("kubelet-oldpair.pem");
        fs::write(&old, b"").unwrap();
        let s = store_in(dir.path());
        s.swap_current(&old, false).unwrap();
        let looped = dir.path().join("kubelet-loop.pem");
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        let err = s.swap_current(&looped, false).unwrap_err();
        assert!(
            matches!(&err, StoreError::Io { path, .. } if *path == looped),
            "{err:?}"
        );
        assert_eq!(fs::read_link(s.current_path()).unwrap(), old);
        assert!(!dir.path().join("kubelet-updated.pem").exists());
    }

    // TestUpdateSymlinkNoSymlink: with no `current`, the link is created.
    #[test]
    fn update_symlink_no_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let pair = dir.path().join("kubelet-newfile.pem");
        fs::write(&pair, b"").unwrap();
        let s = store_in(dir.path());
        s.swap_current(&pair, false).unwrap();
        assert!(pair.exists());
        assert!(is_symlink(&s.current_path()));
        assert_eq!(fs::read_link(s.current_path()).unwrap(), pair);
    }

    // TestUpdateSymlinkReplaceExistingSymlink: current→old, swap to new: both files remain and
    // readlink(current) is the new path. A stale `-updated.pem` link is replaced too.
    #[test]
    fn update_symlink_replace_existing_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("kubelet-oldfile.pem");
        let new = dir.path().join("kubelet-newfile.pem");
        fs::write(&old, b"").unwrap();
        fs::write(&new, b"").unwrap();
        let s = store_in(dir.path());
        let current = s.current_path();
        symlink(&old, &current).unwrap();
        symlink(&old, dir.path().join("kubelet-updated.pem")).unwrap();
        s.swap_current(&new, false).unwrap();
        assert!(old.exists() && new.exists());
        assert!(is_symlink(&current));
        assert_eq!(fs::read_link(&current).unwrap(), new);
        assert!(!dir.path().join("kubelet-updated.pem").exists());
    }

    #[test]
    fn timestamps_are_utc_and_zero_padded() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_024_160);
        assert_eq!(timestamp(t), "2026-11-30-07-36-00");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01-00-00-00");
        assert_eq!(
            numbered("2026-11-30-07-36-00", 0),
            "2026-11-30-07-36-00.pem"
        );
        assert_eq!(
            numbered("2026-11-30-07-36-00", 12),
            "2026-11-30-07-36-00.12.pem"
        );
    }

    #[test]
    fn pair_names_match_exactly() {
        let cases: &[(&str, Option<(&str, u32)>)] = &[
            (
                "kubelet-2026-11-30-07-36-00.pem",
                Some(("2026-11-30-07-36-00", 0)),
            ),
            (
                "kubelet-2026-11-30-07-36-00.7.pem",
                Some(("2026-11-30-07-36-00", 7)),
            ),
            ("kubelet-2026-11-30-07-36-00.0.pem", None),
            ("kubelet-2026-11-30-07-36-00.07.pem", None),
            ("kubelet-2026-11-30-07-36-00.+7.pem", None),
            ("kubelet-2026-11-30-07-36-00.pem.bak", None),
            ("kubelet-2026-11-30-07-36.pem", None),
            ("kubelet-2026-11-30T07-36-00.pem", None),
            ("kubelet-client-2026-11-30-07-36-00.pem", None),
            ("xkubelet-2026-11-30-07-36-00.pem", None),
            ("kubelet-current.pem", None),
            ("kubelet-updated.pem", None),
            ("kubelet-backup-2026-11-30-07-36-00.pem", None),
            ("kubelet.crt", None),
        ];
        for (name, want) in cases {
            assert_eq!(parse_pair_name("kubelet", name), *want, "{name}");
        }
        assert!(is_temp_name("kubelet", ".kubelet-a1B2c3.pem.tmp"));
        assert!(!is_temp_name("kubelet", ".kubelet-client-a1B2c3.pem.tmp"));
        assert!(!is_temp_name("kubelet", ".kubelet-a1B2c.pem.tmp"));
        assert!(!is_temp_name("kubelet", "kubelet-a1B2c3.pem.tmp"));
    }

    /// The pending key is `<cert dir>/<prefix>-pending.key`, 0600, read back as written, and
    /// gone once cleared.
    #[test]
    fn the_pending_key_lives_beside_the_pairs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = store_in(dir.path());
        let path = dir.path().join("kubelet-pending.key");
        assert_eq!(s.pending_key_path(), path);
        assert_eq!(s.pending_key().unwrap(), None);
        s.set_pending_key(Some(b"key one")).unwrap();
        s.set_pending_key(Some(b"key two")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"key two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(s.pending_key().unwrap().as_deref(), Some(&b"key two"[..]));
        s.set_pending_key(None).unwrap();
        assert!(!path.exists());
        assert_eq!(s.pending_key().unwrap(), None);
        s.set_pending_key(None).unwrap();
        // Something else at that path: reading and clearing are errors naming it, and it
        // stays.
        fs::create_dir(&path).unwrap();
        for err in [
            s.pending_key().unwrap_err(),
            s.set_pending_key(None).unwrap_err(),
        ] {
            assert!(
                matches!(&err, StoreError::Io { path: p, .. } if *p == path),
                "{err:?}"
            );
        }
        assert!(path.is_dir());
    }

    /// A certificate directory that became a regular file after the store was built: every
    /// call is an error (never "no certificate"), and the file is left as it was.
    #[test]
    fn a_certificate_directory_replaced_by_a_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let s = FileStore::builder("kubelet", &certs, &certs)
            .build()
            .unwrap();
        s.check_writable().unwrap();
        fs::remove_dir(&certs).unwrap();
        fs::write(&certs, b"not a directory").unwrap();
        let pair = crate::pki::CertificateAuthority::for_tests("ca")
            .unwrap()
            .issue(
                &crate::CsrTemplate::new("node"),
                &crate::PrivateKey::generate(crate::KeyAlgorithm::EcdsaP256).unwrap(),
                &[
                    crate::KeyUsage::DigitalSignature,
                    crate::KeyUsage::ClientAuth,
                ],
                SystemTime::now(),
                SystemTime::now() + Duration::from_secs(3600),
            )
            .unwrap();
        let current = certs.join("kubelet-current.pem");
        match s.current() {
            Err(StoreError::Io { path, .. }) => assert_eq!(path, current),
            other => panic!("{other:?}"),
        }
        for (what, r) in [
            ("check_writable", s.check_writable()),
            (
                "update",
                s.update(pair.cert_pem().as_bytes(), pair.key_pem().as_bytes())
                    .map(drop),
            ),
        ] {
            assert!(matches!(r, Err(StoreError::Io { .. })), "{what}: {r:?}");
        }
        assert_eq!(fs::read(&certs).unwrap(), b"not a directory");
    }

    /// Recovery promotes `-updated.pem` only when `current` does not exist; a `current` that
    /// cannot be inspected (a symlink loop) is an error naming it, and nothing is moved (as
    /// client-go's `recover`, whose `os.Stat` error is returned).
    #[test]
    fn recovery_refuses_a_current_it_cannot_inspect() {
        let dir = tempfile::tempdir().unwrap();
        let pair = dir.path().join("kubelet-2026-11-30-07-36-00.pem");
        fs::write(&pair, b"pair").unwrap();
        let updated = dir.path().join("kubelet-updated.pem");
        let current = dir.path().join("kubelet-current.pem");
        std::os::unix::fs::symlink(&pair, &updated).unwrap();
        std::os::unix::fs::symlink(&current, &current).unwrap();
        let err = FileStore::builder("kubelet", dir.path(), dir.path())
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Io { path, .. } if *path == current),
            "{err:?}"
        );
        assert_eq!(fs::read_link(&updated).unwrap(), pair);
        assert_eq!(fs::read_link(&current).unwrap(), current);
    }

    /// A certificate directory that is a regular file is an error when the store is built,
    /// and the file is left as it was.
    #[test]
    fn a_certificate_directory_that_is_a_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("certs");
        fs::write(&file, b"not a directory").unwrap();
        let err = FileStore::builder("kubelet", &file, &file)
            .build()
            .unwrap_err();
        assert!(matches!(&err, StoreError::Io { .. }), "{err:?}");
        assert_eq!(fs::read(&file).unwrap(), b"not a directory");
    }

    /// Pruning keeps the newest `retention` pairs whatever `current` is: a link (its target is
    /// kept even when older), a regular file, or nothing.
    #[test]
    fn pruning_keeps_the_newest_pairs_whatever_current_is() {
        let names: Vec<String> = (0..4)
            .map(|m| format!("kubelet-2026-11-30-07-3{m}-00.pem"))
            .collect();
        for current in ["link to the oldest", "regular file", "absent"] {
            let dir = tempfile::tempdir().unwrap();
            let s = FileStore::builder("kubelet", dir.path(), dir.path())
                .retention(2)
                .build()
                .unwrap();
            for n in &names {
                fs::write(dir.path().join(n), n).unwrap();
            }
            let link = s.current_path();
            match current {
                "link to the oldest" => {
                    std::os::unix::fs::symlink(dir.path().join(&names[0]), &link).unwrap();
                }
                "regular file" => fs::write(&link, b"copied pair").unwrap(),
                _ => {}
            }
            s.prune().unwrap();
            let kept: Vec<bool> = names.iter().map(|n| dir.path().join(n).exists()).collect();
            let want = [current == "link to the oldest", false, true, true];
            assert_eq!(kept, want, "current: {current}");
        }
    }

    /// A certificate file that cannot be inspected (a symlink loop) is an error naming it,
    /// never "no certificate" (client-go's `loadX509KeyPair` returns its `os.Stat` error).
    #[test]
    fn a_cert_file_that_cannot_be_inspected_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_in(dir.path());
        let crt = dir.path().join("kubelet.crt");
        std::os::unix::fs::symlink(&crt, &crt).unwrap();
        match s.current() {
            Err(StoreError::Io { path, .. }) => assert_eq!(path, crt),
            other => panic!("{other:?}"),
        }
    }
}
