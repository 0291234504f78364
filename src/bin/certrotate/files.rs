//! Plain output files, written atomically with a stated mode (and owner).

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Mode of `--cert-file` and `--ca-file`: public material, readable by everyone.
pub const CERT_MODE: u32 = 0o644;
/// Mode of `--key-file`: the private key, for its owner only.
pub const KEY_MODE: u32 = 0o600;

/// A file owner (`--owner UID[:GID]`) of the plain files. Giving a file to another user needs
/// root: [`Owner::check`] refuses it up front for any other process.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id; `None` leaves the group as created.
    pub gid: Option<u32>,
}

impl Owner {
    /// Whether this process may give its files to this owner: root may give them to anyone;
    /// another user only to itself (its own uid, and its own gid if a group is named).
    ///
    /// # Errors
    /// A message naming the owner and the uid this process runs as.
    pub fn check(&self) -> Result<(), String> {
        let euid = rustix::process::geteuid();
        let egid = rustix::process::getegid();
        if euid.is_root()
            || (self.uid == euid.as_raw() && self.gid.is_none_or(|g| g == egid.as_raw()))
        {
            return Ok(());
        }
        let owner = match self.gid {
            Some(g) => format!("{}:{g}", self.uid),
            None => self.uid.to_string(),
        };
        Err(format!(
            "--owner {owner}: giving the written files to another user needs root (this process \
             runs as uid {}, gid {})",
            euid.as_raw(),
            egid.as_raw()
        ))
    }
}

impl std::str::FromStr for Owner {
    type Err = String;

    fn from_str(s: &str) -> Result<Owner, String> {
        let (uid, gid) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        let uid = uid
            .parse()
            .map_err(|_| format!("owner {s:?}: the user id {uid:?} is not a number"))?;
        let gid = gid
            .map(|g| {
                g.parse()
                    .map_err(|_| format!("owner {s:?}: the group id {g:?} is not a number"))
            })
            .transpose()?;
        Ok(Owner { uid, gid })
    }
}

/// Writes `data` to `path` so that a reader sees the old content or the new, never a part:
/// a temporary file in the same directory (made if missing), set to `mode` exactly (whatever the umask) and to
/// `owner`, flushed to disk, then renamed over `path`, and the directory flushed.
///
/// Returns `false`, writing nothing, when `path` already holds exactly `data` with `mode` (and
/// `owner`).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32, owner: Option<Owner>) -> io::Result<bool> {
    if unchanged(path, data, mode, owner) {
        return Ok(false);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A missing directory is made (0755 before the umask), as for the pair directory.
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".certrotate-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    if let Some(o) = owner {
        std::os::unix::fs::fchown(tmp.as_file(), Some(o.uid), o.gid)?;
    }
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()?;
    Ok(true)
}

fn unchanged(path: &Path, data: &[u8], mode: u32, owner: Option<Owner>) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.mode() & 0o7777 != mode {
        return false;
    }
    if let Some(o) = owner
        && (meta.uid() != o.uid || o.gid.is_some_and(|g| g != meta.gid()))
    {
        return false;
    }
    fs::read(path).is_ok_and(|old| old == data)
}
