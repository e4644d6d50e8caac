//! Files of the data directory that hold secrets (keys).

use std::path::Path;

/// Write a private key (or other secret): readable by its owner only, on disk before this returns.
/// `create_new`: never overwrite one (a key lost is a key that cannot be replaced silently).
pub(crate) fn write_private(path: &Path, data: &[u8], create_new: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if create_new {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}
