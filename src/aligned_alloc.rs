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
//!
//! A large block is cut from a malloc block 64 bytes longer, its distance from malloc's pointer
//! kept in the word just below it, so malloc reuses freed blocks as it always does.
//! (`posix_memalign` asks malloc for more than the block it keeps, so a freed block never fit
//! the next request of its size: peak RSS with 1,500 idle upstream connections rose by 15%.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Blocks at least this large are cache-line aligned (glibc starts `rep movsb` at 2,112 bytes).
const LARGE: usize = 2048;
const LINE: usize = 64;

/// [`System`], with blocks of [`LARGE`] bytes and more aligned to 64 bytes.
pub struct LineAligned;

/// Whether a block of this layout is cut from a longer malloc block (see the module doc); a
/// function of the layout only, so a block is always freed and resized the way it was made.
/// Alignments above a line stay with [`System`].
fn is_large(layout: Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= LINE
}

/// A block of `size` bytes on a line: malloc's block is `LINE` longer; the block starts at the
/// first line boundary past malloc's pointer, 8 to 64 bytes in (malloc aligns to at least 8),
/// and the word below it records that distance.
///
/// # Safety
/// As `GlobalAlloc::alloc`.
unsafe fn alloc_line(size: usize, zeroed: bool) -> *mut u8 {
    let Some(total) = size.checked_add(LINE) else {
        return ptr::null_mut();
    };
    // SAFETY: plain malloc / calloc of a non-zero size.
    let raw: *mut u8 = unsafe {
        if zeroed {
            libc::calloc(1, total)
        } else {
            libc::malloc(total)
        }
    }
    .cast();
    if raw.is_null() {
        return raw;
    }
    let offset = LINE - (raw as usize % LINE);
    // SAFETY: `offset` is at most LINE, so the block's `size` bytes lie inside malloc's `total`;
    // at least 8, so the word below the block (line aligned, hence word aligned) is inside too.
    unsafe {
        let block = raw.add(offset);
        block.cast::<usize>().sub(1).write(offset);
        block
    }
}

/// malloc's pointer for a block made by [`alloc_line`], and the block's distance from it.
///
/// # Safety
/// `block` is a live block from [`alloc_line`] or [`realloc_line`].
unsafe fn malloc_start(block: *mut u8) -> (*mut u8, usize) {
    // SAFETY: the word below the block holds its distance from malloc's pointer.
    unsafe {
        let offset = block.cast::<usize>().sub(1).read();
        (block.sub(offset), offset)
    }
}

/// Resizes a block from [`alloc_line`]: malloc's `realloc` (in place when it can), then, if
/// malloc's new pointer sits at another distance from a line, the bytes move to the line.
///
/// # Safety
/// `block` is a live block of `old_size` bytes from [`alloc_line`] or [`realloc_line`]. On a
/// null return it is untouched.
unsafe fn realloc_line(block: *mut u8, old_size: usize, new_size: usize) -> *mut u8 {
    let Some(total) = new_size.checked_add(LINE) else {
        return ptr::null_mut();
    };
    // SAFETY: the caller's contract.
    let (raw, offset) = unsafe { malloc_start(block) };
    // SAFETY: `raw` is malloc's pointer; on failure it is left as it was.
    let moved: *mut u8 = unsafe { libc::realloc(raw.cast(), total) }.cast();
    if moved.is_null() {
        return moved;
    }
    let new_offset = LINE - (moved as usize % LINE);
    let kept = old_size.min(new_size);
    // SAFETY: realloc kept the first min(old, new) + LINE bytes, which hold the block's `kept`
    // bytes at `offset` (at most LINE); both ranges lie inside the new `total` bytes, and
    // `ptr::copy` allows them to overlap. The distance is written after the bytes moved.
    unsafe {
        let new_block = moved.add(new_offset);
        if new_offset != offset {
            ptr::copy(moved.add(offset), new_block, kept);
        }
        new_block.cast::<usize>().sub(1).write(new_offset);
        new_block
    }
}

// SAFETY: a layout's blocks come from one source, chosen by `is_large` from the layout alone:
// `System` for small blocks and alignments above a line, `alloc_line` (line aligned, so every
// alignment up to a line is met) for the rest; each is freed and resized by its own source,
// and a resize across the threshold allocates from the new source, copies, and frees the old.
unsafe impl GlobalAlloc for LineAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            // SAFETY: as `GlobalAlloc::alloc`.
            unsafe { alloc_line(layout.size(), false) }
        } else {
            // SAFETY: as `GlobalAlloc::alloc`.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            // SAFETY: as `GlobalAlloc::alloc_zeroed`.
            unsafe { alloc_line(layout.size(), true) }
        } else {
            // SAFETY: as `GlobalAlloc::alloc_zeroed`.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(layout) {
            // SAFETY: a large layout's block came from `alloc_line` or `realloc_line`.
            unsafe { libc::free(malloc_start(ptr).0.cast()) }
        } else {
            // SAFETY: a small layout's block came from `System`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(asked) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        match (is_large(layout), is_large(asked)) {
            // SAFETY: the block came from `alloc_line` / `realloc_line`, `layout.size()` long.
            (true, true) => unsafe { realloc_line(ptr, layout.size(), new_size) },
            // SAFETY: the block came from `System` with `layout`.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            // Across the threshold: a block from the other source, the bytes, the old one freed.
            // SAFETY: `asked` has a non-zero size; both blocks hold the bytes copied.
            _ => unsafe {
                let moved = self.alloc(asked);
                if !moved.is_null() {
                    ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                moved
            },
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

    /// Many large blocks resized up and down at random (malloc moves some of them to another
    /// distance from a line): every block stays line aligned and keeps its bytes, and blocks
    /// live at the same time never overlap.
    #[test]
    fn random_resizes_keep_large_blocks_aligned_and_whole() {
        let a = LineAligned;
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut blocks: Vec<(*mut u8, Layout, u8)> = Vec::new();
        // SAFETY: every block is written and read within its size and freed with its layout.
        unsafe {
            for round in 0..2000 {
                let size = LARGE + (next() as usize % (96 * 1024));
                let tag = round as u8;
                if blocks.len() < 16 || next() % 3 == 0 {
                    let layout = Layout::from_size_align(size, 1 << (next() % 7)).expect("layout");
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    ptr::write_bytes(p, tag, size);
                    blocks.push((p, layout, tag));
                    continue;
                }
                let i = next() as usize % blocks.len();
                let (p, layout, tag) = blocks[i];
                let q = a.realloc(p, layout, size);
                assert!(!q.is_null());
                assert_eq!(q as usize % LINE, 0);
                let kept = layout.size().min(size);
                assert!(
                    (0..kept).all(|k| *q.add(k) == tag),
                    "bytes kept over a resize"
                );
                ptr::write_bytes(q, tag, size);
                blocks[i] = (
                    q,
                    Layout::from_size_align(size, layout.align()).expect("layout"),
                    tag,
                );
                if blocks.len() > 48 {
                    let (p, layout, _) = blocks.swap_remove(0);
                    a.dealloc(p, layout);
                }
            }
            for &(p, layout, tag) in &blocks {
                let whole = (0..layout.size()).all(|k| *p.add(k) == tag);
                assert!(whole, "no block overwrote another");
            }
            for (p, layout, _) in blocks {
                a.dealloc(p, layout);
            }
        }
    }
}
