//! The binary's memory allocator: the system allocator, asking the kernel to back large blocks with huge pages.
//!
//! A batch of a million records fills buffers of tens of megabytes (the record arena, the job's outputs). On
//! 4 KiB pages the first touch of each page is a fault of its own, about 10,000 per 40 MB, which cost a third of
//! a large batch's time. With transparent huge pages in `madvise` mode (the common default) a block marked
//! `MADV_HUGEPAGE` faults in 2 MiB at a time. Small blocks are left alone.

use std::alloc::{GlobalAlloc, Layout, System};

/// Size of a transparent huge page on x86-64 and aarch64 (with 4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// Blocks at least this large are marked for huge pages.
pub const HUGE_THRESHOLD: usize = HUGE_PAGE;

/// The system allocator, marking blocks of [`HUGE_THRESHOLD`] bytes or more for transparent huge pages.
pub struct HugePageAlloc;

/// Size of a base page (the unit madvise works in).
const PAGE: usize = 4096;

/// Marks the pages of `[ptr, ptr + len)` for transparent huge pages; a hint, so failures are ignored (a kernel
/// without THP simply keeps 4 KiB pages). The range is widened to whole base pages, so a block the system
/// allocator mapped on its own is marked as one piece: splitting its mapping would make the allocator's in-place
/// `mremap` growth fail and copy instead.
fn advise(ptr: *mut u8, len: usize) {
    if ptr.is_null() || len < HUGE_THRESHOLD {
        return;
    }
    let start = ptr as usize / PAGE * PAGE;
    let end = (ptr as usize + len).next_multiple_of(PAGE);
    #[cfg(target_os = "linux")]
    // SAFETY: the range covers a block this allocator just handed out, widened to the base pages holding it;
    // madvise(MADV_HUGEPAGE) changes no contents, only how the kernel backs the pages.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; `advise` only adds a paging hint on the returned block.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        advise(p, new_size);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_small_and_large_keep_their_contents() {
        let a = HugePageAlloc;
        for size in [16usize, 4096, HUGE_THRESHOLD, HUGE_THRESHOLD * 3 + 5] {
            let layout = Layout::from_size_align(size, 16).unwrap();
            // SAFETY: layout has a non-zero size; the block is written within bounds and freed with its layout.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                for i in (0..size).step_by(4093) {
                    *p.add(i) = (i % 251) as u8;
                }
                let q = a.realloc(p, layout, size * 2);
                assert!(!q.is_null());
                for i in (0..size).step_by(4093) {
                    assert_eq!(*q.add(i), (i % 251) as u8);
                }
                a.dealloc(q, Layout::from_size_align(size * 2, 16).unwrap());
                let z = a.alloc_zeroed(layout);
                assert!((0..size).step_by(4093).all(|i| *z.add(i) == 0));
                a.dealloc(z, layout);
            }
        }
    }
}
