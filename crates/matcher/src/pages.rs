//! The big tables on 2 MiB pages.
//!
//! A lookup into a table of tens of MiB misses the cache, and with 4 KiB pages it misses the
//! TLB as well: 64 MiB of name slots are 16,384 pages, more than the processor's TLB holds, so
//! most lookups also walk the page tables, one more trip to memory before the one they came for.
//! Debian's kernel backs anonymous memory with transparent huge pages only where the program
//! asks (`madvise`), so the tables ask, before their pages are first touched. Measured with
//! `cargo bench -p rephub-matcher` in BENCHMARKS.md ("2 MiB pages").

/// Tables smaller than this fit the TLB's reach anyway.
const HUGE: usize = 2 << 20;

/// `len` copies of `value`, on huge pages where the kernel has them.
pub(crate) fn filled<T: Clone>(value: T, len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    advise(&v);
    v.resize(len, value);
    v
}

/// Asks the kernel to back the whole 2 MiB pages inside `v`'s allocation with huge pages. Best
/// called before the allocation is first written; pages touched before are merged later, if at
/// all. A hint: if the kernel says no, nothing changes.
pub(crate) fn advise<T>(v: &Vec<T>) {
    let bytes = v.capacity().saturating_mul(std::mem::size_of::<T>());
    if bytes < 2 * HUGE {
        return;
    }
    let start = v.as_ptr() as usize;
    let (Some(from), Some(end)) = (
        start.checked_next_multiple_of(HUGE),
        start.checked_add(bytes),
    ) else {
        return;
    };
    let to = end / HUGE * HUGE;
    if to > from {
        madvise_huge(from, to - from);
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn madvise_huge(addr: usize, len: usize) {
    // SAFETY: `addr..addr + len` is page-aligned and lies inside a live allocation of the
    // caller's vector; MADV_HUGEPAGE changes only how the kernel backs those pages, never their
    // contents or whether they are mapped.
    let _ = unsafe {
        rustix::mm::madvise(
            addr as *mut std::ffi::c_void,
            len,
            rustix::mm::Advice::LinuxHugepage,
        )
    };
}

#[cfg(not(target_os = "linux"))]
fn madvise_huge(_addr: usize, _len: usize) {}

#[cfg(test)]
mod tests {
    #[test]
    fn filled_holds_the_values() {
        let v = super::filled(7u64, 3 << 20);
        assert_eq!(v.len(), 3 << 20);
        assert!(v.iter().all(|&x| x == 7));
        assert!(super::filled(1u8, 0).is_empty());
    }

    /// The kernel's own account (`/proc/self/smaps`) of a 16 MiB table: huge pages back it. Only
    /// where the kernel gives them on request (`madvise` mode, Debian's default); with `always`
    /// they come without asking and with `never` not at all, and the test says so and stops.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_big_table_is_on_huge_pages() {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if !mode.contains("[madvise]") {
            eprintln!("skipped: transparent huge pages are not in madvise mode here ({mode:?})");
            return;
        }
        let v = super::filled(1u64, 2 << 20);
        let lo = v.as_ptr() as usize;
        let hi = lo + (16 << 20);
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut huge_kb = 0;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line
                .split_whitespace()
                .next()
                .and_then(|r| r.split_once('-'));
            if let Some((a, b)) = range.filter(|_| !line.ends_with(" kB")) {
                let a = usize::from_str_radix(a, 16).unwrap_or(usize::MAX);
                let b = usize::from_str_radix(b, 16).unwrap_or(0);
                inside = a < hi && lo < b;
            } else if let Some(kb) = line.strip_prefix("AnonHugePages:").filter(|_| inside) {
                huge_kb += kb
                    .trim()
                    .trim_end_matches(" kB")
                    .parse::<usize>()
                    .unwrap_or(0);
            }
        }
        assert!(
            huge_kb >= 2048,
            "{huge_kb} kB of huge pages under the table"
        );
        assert_eq!(v[v.len() - 1], 1);
    }
}
