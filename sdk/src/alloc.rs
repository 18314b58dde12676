//! The plugin's global allocator on wasm (feature `bump-alloc`, on by
//! default): a bump allocator for small blocks.
//!
//! The host gives every call a fresh instance and throws its memory away
//! afterwards, so freeing is mostly wasted work: lifting the container view
//! allocates ~80 strings and lists, the plugin drops them all, and the
//! answer's lists are freed again by the post-return function. With
//! wasi-libc's dlmalloc that malloc/free traffic was about two thirds of the
//! guest's time in a call.
//!
//! Small blocks are carved first from a chunk inside the allocator itself
//! (zeroed, so in `.bss`: a call that stays within it never initialises
//! libc's allocator, whose set-up and bookkeeping write to pages of memory
//! that the host then has to reset), then from chunks taken from wasi-libc's
//! `malloc` (which also keeps serving libc's own allocations, so the two never
//! share memory). Freeing or growing the most recent block works in place (a
//! `Vec` or `String` being built keeps growing in place; a temporary freed
//! right away is reclaimed); other frees are no-ops until the instance is
//! discarded. Blocks of [`LARGE`] bytes or more go to `malloc`/`free`
//! themselves, so large temporaries are still returned. Memory growth stays
//! under the host's memory cap: libc grows the linear memory, the host's
//! limiter refuses growth past the cap and the call fails as out-of-memory.
//!
//! A plugin that keeps allocating and freeing many small blocks in a
//! non-LIFO order for a long time can use more memory than with dlmalloc; it
//! can opt out with `default-features = false` on berth-sdk (and then set
//! its own `#[global_allocator]` or keep the standard one).

use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, UnsafeCell};
use core::ptr;

/// Requests of this size or more bypass the chunks.
pub const LARGE: usize = 32 << 10;
/// The chunk inside the allocator, used first.
const INLINE_CHUNK: usize = 16 << 10;
/// The first chunk from `malloc`; later ones double, up to [`MAX_CHUNK`].
const FIRST_CHUNK: usize = 32 << 10;
const MAX_CHUNK: usize = 256 << 10;

unsafe extern "C" {
    fn malloc(size: usize) -> *mut u8;
    fn free(ptr: *mut u8);
    fn realloc(ptr: *mut u8, size: usize) -> *mut u8;
    fn aligned_alloc(align: usize, size: usize) -> *mut u8;
}

/// libc's `malloc` returns blocks aligned to this.
const MALLOC_ALIGN: usize = 16;

pub struct Bump {
    /// Next free byte of the current chunk.
    top: Cell<usize>,
    /// End of the current chunk.
    end: Cell<usize>,
    /// Size of the next chunk to take from `malloc`; 0 until the inline
    /// chunk is used up (every field zero: the static is in `.bss`).
    next_chunk: Cell<usize>,
    /// The first chunk.
    inline: UnsafeCell<[u8; INLINE_CHUNK]>,
}

// SAFETY: wasm32-wasip2 without the atomics feature has one thread.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
unsafe impl Sync for Bump {}

impl Bump {
    pub const fn new() -> Bump {
        Bump { top: Cell::new(0), end: Cell::new(0), next_chunk: Cell::new(0), inline: UnsafeCell::new([0; INLINE_CHUNK]) }
    }

    /// A block from the chunks (`layout.size() < LARGE`).
    fn bump(&self, layout: Layout) -> *mut u8 {
        let align = layout.align();
        let size = layout.size();
        let start = (self.top.get() + align - 1) & !(align - 1);
        if let Some(stop) = start.checked_add(size)
            && stop <= self.end.get()
            && self.end.get() != 0
        {
            self.top.set(stop);
            return start as *mut u8;
        }
        // A new chunk; what was left of the old one is abandoned.
        if self.end.get() == 0 && size + align <= INLINE_CHUNK {
            let chunk = self.inline.get() as usize;
            let start = (chunk + align - 1) & !(align - 1);
            self.top.set(start + size);
            self.end.set(chunk + INLINE_CHUNK);
            return start as *mut u8;
        }
        if self.next_chunk.get() == 0 {
            self.next_chunk.set(FIRST_CHUNK);
        }
        let want = self.next_chunk.get().max(size + align);
        // SAFETY: plain libc allocation of a non-zero size.
        let chunk = unsafe { malloc(want) } as usize;
        if chunk == 0 {
            return ptr::null_mut();
        }
        self.next_chunk.set((self.next_chunk.get() * 2).min(MAX_CHUNK));
        let start = (chunk + align - 1) & !(align - 1);
        self.top.set(start + size);
        self.end.set(chunk + want);
        start as *mut u8
    }

    /// Whether `ptr..ptr+size` is the most recent block of the current chunk.
    fn is_last(&self, ptr: *mut u8, size: usize) -> bool {
        ptr as usize + size == self.top.get()
    }
}

impl Default for Bump {
    fn default() -> Self {
        Bump::new()
    }
}

fn large_alloc(layout: Layout) -> *mut u8 {
    // SAFETY: libc allocation; the size is at least LARGE (non-zero) and
    // `aligned_alloc` gets a power-of-two alignment.
    unsafe {
        if layout.align() <= MALLOC_ALIGN {
            malloc(layout.size())
        } else {
            aligned_alloc(layout.align(), layout.size().next_multiple_of(layout.align()))
        }
    }
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE {
            return large_alloc(layout);
        }
        self.bump(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= LARGE {
            // SAFETY: blocks of this size came from `large_alloc`.
            unsafe { free(ptr) };
        } else if self.is_last(ptr, layout.size()) {
            self.top.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if old >= LARGE && new_size >= LARGE && layout.align() <= MALLOC_ALIGN {
            // SAFETY: `ptr` came from libc's malloc (a large block).
            return unsafe { realloc(ptr, new_size) };
        }
        if old < LARGE && new_size < LARGE {
            if new_size <= old {
                if self.is_last(ptr, old) {
                    self.top.set(ptr as usize + new_size);
                }
                return ptr;
            }
            if self.is_last(ptr, old) && ptr as usize + new_size <= self.end.get() {
                self.top.set(ptr as usize + new_size);
                return ptr;
            }
        }
        // Moves (between the chunks and libc, or out of a full chunk).
        // SAFETY: `new_size` and `layout.align()` form a valid layout (the
        // caller's contract), and both blocks are live for the copy.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                ptr::copy_nonoverlapping(ptr, new, old.min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn bumps_aligns_and_reclaims_the_last_block() {
        let b = Bump::new();
        unsafe {
            let a = b.alloc(layout(3, 1));
            let c = b.alloc(layout(8, 8));
            assert_eq!(c as usize % 8, 0);
            assert!(c as usize >= a as usize + 3);
            c.write_bytes(7, 8);
            // The last block is reclaimed; an earlier one is not.
            b.dealloc(c, layout(8, 8));
            let d = b.alloc(layout(8, 8));
            assert_eq!(d, c);
            b.dealloc(a, layout(3, 1));
            let e = b.alloc(layout(1, 1));
            assert!(e as usize >= d as usize + 8);
        }
    }

    #[test]
    fn realloc_grows_the_last_block_in_place_and_copies_otherwise() {
        let b = Bump::new();
        unsafe {
            let a = b.alloc(layout(4, 1));
            a.copy_from(b"abcd".as_ptr(), 4);
            let a2 = b.realloc(a, layout(4, 1), 100);
            assert_eq!(a2, a);
            let other = b.alloc(layout(4, 1));
            let a3 = b.realloc(a2, layout(100, 1), 200);
            assert_ne!(a3, a2);
            assert_eq!(std::slice::from_raw_parts(a3, 4), b"abcd");
            b.dealloc(other, layout(4, 1));
            // Across the large threshold and back, contents kept.
            let big = b.realloc(a3, layout(200, 1), LARGE * 2);
            assert_eq!(std::slice::from_raw_parts(big, 4), b"abcd");
            let small = b.realloc(big, layout(LARGE * 2, 1), 10);
            assert_eq!(std::slice::from_raw_parts(small, 4), b"abcd");
            b.dealloc(small, layout(10, 1));
        }
    }

    #[test]
    fn the_first_blocks_come_from_the_inline_chunk() {
        let b = Box::new(Bump::new());
        let inline = b.inline.get() as usize..b.inline.get() as usize + INLINE_CHUNK;
        unsafe {
            let a = b.alloc(layout(100, 8));
            assert!(inline.contains(&(a as usize)));
            // Past the inline chunk: a chunk from malloc.
            let big = b.alloc(layout(INLINE_CHUNK, 1));
            assert!(!inline.contains(&(big as usize)));
            big.write_bytes(1, INLINE_CHUNK);
        }
        // A block larger than the inline chunk first goes to malloc.
        let b = Box::new(Bump::new());
        let inline = b.inline.get() as usize..b.inline.get() as usize + INLINE_CHUNK;
        let p = unsafe { b.alloc(layout(INLINE_CHUNK + 1, 1)) };
        assert!(!p.is_null() && !inline.contains(&(p as usize)));
    }

    #[test]
    fn chunks_run_out_and_new_ones_follow() {
        let b = Bump::new();
        let mut seen = Vec::new();
        unsafe {
            for i in 0..10_000usize {
                let size = 1 + i % 700;
                let p = b.alloc(layout(size, 4));
                assert!(!p.is_null());
                assert_eq!(p as usize % 4, 0);
                p.write_bytes((i % 251) as u8, size);
                seen.push((p, size, (i % 251) as u8));
            }
            for (p, size, v) in seen {
                assert!(std::slice::from_raw_parts(p, size).iter().all(|&x| x == v));
            }
            let big = b.alloc(layout(LARGE, 64));
            assert_eq!(big as usize % 64, 0);
            b.dealloc(big, layout(LARGE, 64));
        }
    }
}
