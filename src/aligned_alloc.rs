//! The process's allocator: the system's, with blocks of 2 KiB and more aligned to a cache line.
//!
//! glibc copies blocks of about 2 KiB and more with `rep movsb`, which on AMD Zen 3 and 4 runs
//! 20-30 times slower when the destination is not aligned as the source is (glibc bug 30994;
//! measured here: 2.8 GB/s against 64-85 GB/s). malloc's 16-byte alignment puts
//! most fresh buffers in that case, and rustls copies every record it decrypts into one, so
//! that copy took a quarter of Airlock's CPU in a download. A cache-line-aligned destination
//! takes the fast path whatever the source's offset. glibc's own switch for this
//! (`GLIBC_TUNABLES`) cannot be used: setting any tunable makes glibc 2.36's malloc fault in
//! fresh pages for every 4 KiB streamed. Smaller blocks keep malloc's alignment (and speed).

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large are cache-line aligned (glibc starts `rep movsb` at 2,112 bytes).
const LARGE: usize = 2048;
const LINE: usize = 64;

/// [`System`], with blocks of [`LARGE`] bytes and more aligned to 64 bytes.
pub struct LineAligned;

/// The layout actually asked of the system for `layout`: a function of size and alignment
/// only, so a block is freed and resized with the layout it was made with.
fn widen(layout: Layout) -> Layout {
    if layout.size() >= LARGE && layout.align() < LINE {
        // A power of two larger than the old alignment, and the size is unchanged: the only
        // failure (size overflowing when rounded up to the alignment) cannot happen for a size
        // the old layout allowed, less than isize::MAX - 63. Fall back to the layout as asked.
        Layout::from_size_align(layout.size(), LINE).unwrap_or(layout)
    } else {
        layout
    }
}

// SAFETY: every call goes to `System` with the widened layout, which keeps the caller's size and
// only raises the alignment; a block is always freed or resized with the same widened layout it
// was allocated with, because `widen` depends on nothing but the layout.
unsafe impl GlobalAlloc for LineAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `widen` keeps a non-zero size.
        unsafe { System.alloc(widen(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(widen(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated with `widen(layout)` (see the impl's comment).
        unsafe { System.dealloc(ptr, widen(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = widen(layout);
        let Ok(asked) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new = widen(asked);
        if new.align() == old.align() {
            // SAFETY: `ptr` was allocated with `old`; `new_size` is valid for its alignment.
            return unsafe { System.realloc(ptr, old, new_size) };
        }
        // The alignment changes across LARGE: a new block, the contents, the old one freed.
        // SAFETY: `new` has a non-zero size; both blocks are valid for the bytes copied.
        unsafe {
            let moved = System.alloc(new);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                System.dealloc(ptr, old);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Large blocks come back line aligned, small ones as asked; resizing across the threshold
    /// either way keeps the contents and the alignment rule.
    #[test]
    fn large_blocks_are_line_aligned_and_resize_keeping_their_contents() {
        let a = LineAligned;
        // SAFETY: every block is used within its size and freed with the layout it has.
        unsafe {
            let small = Layout::from_size_align(100, 1).expect("layout");
            let p = a.alloc(small);
            assert!(!p.is_null());
            for i in 0..100 {
                *p.add(i) = i as u8;
            }
            let p = a.realloc(p, small, 16 * 1024);
            assert!(!p.is_null());
            assert_eq!(p as usize % LINE, 0, "grown past the threshold");
            assert!((0..100).all(|i| *p.add(i) == i as u8), "contents kept");
            let large = Layout::from_size_align(16 * 1024, 1).expect("layout");
            let p = a.realloc(p, large, 64 * 1024);
            assert_eq!(p as usize % LINE, 0, "grown while large");
            assert!((0..100).all(|i| *p.add(i) == i as u8));
            let larger = Layout::from_size_align(64 * 1024, 1).expect("layout");
            let p = a.realloc(p, larger, 50);
            assert!(!p.is_null());
            assert!((0..50).all(|i| *p.add(i) == i as u8), "shrunk below it");
            a.dealloc(p, Layout::from_size_align(50, 1).expect("layout"));

            let zeroed = Layout::from_size_align(4096, 8).expect("layout");
            let z = a.alloc_zeroed(zeroed);
            assert_eq!(z as usize % LINE, 0);
            assert!((0..4096).all(|i| *z.add(i) == 0));
            a.dealloc(z, zeroed);

            // An alignment above a line is kept, not lowered.
            let page = Layout::from_size_align(8192, 4096).expect("layout");
            let q = a.alloc(page);
            assert_eq!(q as usize % 4096, 0);
            a.dealloc(q, page);
        }
    }
}
