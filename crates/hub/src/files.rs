//! Files of the data directory: secrets (keys), and state written whole (atomically).

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

/// Put a secret at `path` unless one is there already, whole or not at all: written to a file
/// of its own beside it, synced, then linked into place (a link never replaces a file). Two
/// processes making the same key at once (two hubs started together on one directory, even from
/// two containers or hosts sharing it) both end up with the one that was linked first, never with
/// an empty or half-written file, which creating `path` itself and then writing it could show the
/// other. Returns what `path` holds.
pub(crate) fn create_private_once(path: &Path, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // A name no other maker can pick: process ids repeat across containers and hosts.
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.new", hex::encode(nonce)));
    let tmp = std::path::PathBuf::from(tmp);
    if let Err(e) = write_private(&tmp, data, true) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => std::fs::File::open(dir)?.sync_all()?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        // A file system without hard links (some network and FAT mounts): the file itself,
        // created only if absent; a maker that loses the race there may read it unfinished
        // (and refuse it as not a key) instead of waiting.
        Err(_) => match write_private(path, data, true) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        },
    }
    std::fs::read(path)
}

/// Replace `path` with `data` whole: written beside it, synced, renamed over it, the directory
/// synced. A crash leaves the old file or the new one, never a mix. Creates the directory.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_made_once_is_kept_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("secret.key");
        assert_eq!(create_private_once(&path, b"first").unwrap(), b"first");
        assert_eq!(create_private_once(&path, b"second").unwrap(), b"first");
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Nothing is left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret.key"]);
    }

    #[test]
    fn makers_racing_all_get_the_one_key_linked() {
        // Rounds, since a race shows only sometimes (a key written in place was read empty by
        // another maker in about half of the rounds).
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("secret.key");
            let got: Vec<Vec<u8>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8u8)
                    .map(|i| {
                        let path = &path;
                        s.spawn(move || create_private_once(path, &[i; 32]).unwrap())
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let kept = std::fs::read(&path).unwrap();
            assert_eq!(kept.len(), 32);
            assert!(got.iter().all(|g| *g == kept), "{got:?}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        }
    }
}
